"""EAGLE-1/2 heads in the original EAGLE checkpoint layout, written bias-free (the form all loaders read alike).

Defined by: SafeAILab/EAGLE `eagle/model/cnets1.py` (Model: fc = Linear(2H, H, bias=config["bias"], default
True) on cat(embedding, feature); layers.{i} = LlamaDecoderLayer where layer 0 has NO input_layernorm;
embed_tokens loaded from the base model) and `ea_model.py` (reads "bias" from config.json); read at commit
2174a79. vLLM 0.32 `model_executor/models/llama_eagle.py:110` builds fc with bias=False, and its decoder
layer (`models/llama.py:268-271`) reads the SAME "bias" key as attention biases (`attention_bias =
config.attention_bias or config.bias`): q/k/v/o_proj get biases that no EAGLE checkpoint has, left as
uninitialised memory (NaN here) without an error, so every proposal is token 0 (0 of 1,794 drafted tokens
accepted). SGLang's `models/llama.py` LlamaDecoderLayer has the same line, under its llama_eagle.py fc
(bias=config.bias). "bias": true is thus read three ways; "bias": false means one thing to all three (fc
and attention without bias) and is what we write: a non-zero fc bias is refused (train with
draft.fc_bias=false, the default), a zero one is dropped.
Layout: config.json (Llama fields, architectures ["LlamaForCausalLM"], "bias": false) + model.safetensors with
fc.weight, layers.{i}.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, post_attention_layernorm,
input_layernorm (i > 0 only)}.weight. No LM head: EAGLE-1/2 use the target's.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from train.drafts.eagle.head import EagleHead, EagleHeadConfig
from train.export_formats.card import vllm_commands
from train.export_formats.common import (
    DTYPES,
    ExportError,
    Target,
    cast,
    llama_layer_fields,
    read_json,
    read_tensors,
    refuse_unknown,
    write_json,
    write_tensors,
)
from train.modeling.draft.layers import target_rope

NAME = "eagle"
DETECT_ORDER = 2  # the least marked layout (any config.json + weights): tried after every other format


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    if not isinstance(head, EagleHead):
        raise ExportError(f"{NAME}: only EAGLE-1/2 heads have this layout, not {type(head).__name__}")
    cfg = head.config
    if cfg.first_layer_input_norm:
        raise ExportError(
            f"{NAME}: layers.0.input_layernorm.weight has no place in the EAGLE layout (layer 0 has no input "
            "norm); train with first_layer_input_norm=false to export this format"
        )
    if cfg.vocab_size not in (0, int(target.config.vocab_size)):
        raise ExportError(
            f"{NAME}: head vocab_size {cfg.vocab_size} != target vocab_size {target.config.vocab_size}"
        )
    sd = dict(head.state_dict())
    bias = sd.pop("fc.bias", None)
    if bias is not None and bool(bias.any()):
        raise ExportError(
            f"{NAME}: fc.bias is non-zero (mean |b| {bias.abs().mean():.3g}); vLLM's EAGLE fc has no bias and "
            'vLLM and SGLang read config "bias": true as attention biases the checkpoint lacks (uninitialised '
            "weights, silently). Train with draft.fc_bias=false (the default) to export this format"
        )
    refuse_unknown(sd, {k for k in sd if k.startswith(("fc.", "layers."))}, NAME)
    write_tensors(out / "model.safetensors", cast(sd, DTYPES[dtype]))
    config = {
        "architectures": ["LlamaForCausalLM"],
        **llama_layer_fields(cfg, target, dtype),
        "bias": False,  # explicit: the EAGLE repo's default is True (see the module docstring)
        "pretraining_tp": 1,  # cnets1.py reads it in every projection
        "tie_word_embeddings": False,
    }
    write_json(out / "config.json", config)
    return [
        "```bash",
        f"python -m sglang.launch_server --model {target.path} --speculative-algorithm EAGLE \\",
        f"    --speculative-draft-model-path {out}",
        "```",
        "Also loads in the SafeAILab EAGLE repo (`EaModel.from_pretrained(..., ea_model_path=...)`).",
        "vLLM (`method: eagle`):",
        *vllm_commands(target.path, out, "eagle", int(meta.get("speculative_tokens") or 3)),
    ]


def matches(src: Path) -> bool:
    """Tried last (DETECT_ORDER; train.export.detect): a config.json and a weights file that no other layout claimed."""
    return (src / "config.json").is_file() and any(
        (src / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")
    )


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    if c.get("qkv_bias") or c.get("attention_bias"):
        raise ExportError(f"{src}: attention biases are set; our EAGLE head has none")
    raw = {k: v for k, v in read_tensors(src).items() if k != "embed_tokens.weight"}  # the target's embedding
    heads = int(c["num_attention_heads"])
    h = int(c["hidden_size"])
    cfg = EagleHeadConfig(
        hidden_size=h,
        intermediate_size=int(c["intermediate_size"]),
        num_heads=heads,
        num_kv_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=int(c.get("head_dim") or h // heads),
        num_layers=int(c.get("num_hidden_layers", 1)),
        **target_rope(c),
        rms_norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        vocab_size=int(c.get("vocab_size", 0)),
        first_layer_input_norm="layers.0.input_layernorm.weight" in raw,
        # The tensors say it: EAGLE-repo checkpoints (config "bias" true or absent) carry fc.bias, ours do not.
        fc_bias="fc.bias" in raw,
    )
    head = EagleHead(cfg)
    missing, unexpected = head.load_state_dict({k: v.float() for k, v in raw.items()}, strict=False)
    if missing or unexpected:
        raise ExportError(f"{src}: missing tensors {missing}, unexpected {unexpected}")
    return head, {"imported_format": NAME}
