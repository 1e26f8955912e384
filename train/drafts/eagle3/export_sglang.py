"""EAGLE-3 in the layout of the published SafeAILab EAGLE-3 checkpoints, which SGLang loads as is.

Defined by: SGLang `python/sglang/srt/models/llama_eagle3.py` (LlamaForCausalLMEagle3; read at commit
03d5a77, 2025) and `models/llama.py:set_eagle3_layers_to_capture`; checkpoints such as
`yuhuili/EAGLE3-LLaMA3.1-Instruct-8B`. Layout: config.json (Llama fields + architectures
["LlamaForCausalLMEagle3"], draft_vocab_size, eagle_config.eagle_aux_hidden_state_layer_ids) and
model.safetensors with fc.weight, midlayer.{hidden_norm,input_layernorm,self_attn.*,post_attention_layernorm,
mlp.*}, norm.weight, lm_head.weight, d2t (offsets), t2d. SGLang's extra layers (num_hidden_layers > 1) are a
different class with other names, so deeper heads are refused here: use the speculators format for them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from train.drafts.eagle3 import export_shared as e3
from train.drafts.eagle3.head import Eagle3Head
from train.export_formats.common import (
    DTYPES,
    ExportError,
    Target,
    cast,
    read_json,
    read_tensors,
    refuse_unknown,
    write_json,
    write_tensors,
)

NAME = "eagle3-sglang"
ARCHITECTURE = "LlamaForCausalLMEagle3"
# Why vLLM must not be handed this folder (eval/vllm_backend/run.py prints it when it refuses one).
VLLM_READS_IT_WRONG = "vLLM reads its layer ids without SGLang's +1"


def _rename_out(key: str) -> str:
    return "midlayer." + key[len("layers.0.") :] if key.startswith("layers.0.") else key


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    if not isinstance(head, Eagle3Head):
        raise ExportError(
            f"{NAME}: only EAGLE-3 heads (eagle3/scylla) have this layout, not {type(head).__name__}"
        )
    e3.check_representable(head, NAME, target)
    if head.config.norm_before_residual or head.config.norm_before_fc:
        raise ExportError(
            f"{NAME}: norm_before_residual / norm_before_fc (input_norm.weight) have no place in the EAGLE-3 "
            "checkpoint layout this format writes; export with --format speculators"
        )
    if head.config.num_layers != 1:
        raise ExportError(
            f"{NAME}: layers.1.* has no place in the EAGLE-3 checkpoint layout (one midlayer); "
            "export deep heads with --format speculators"
        )
    sd = {k: v for k, v in head.state_dict().items() if k != "d2t"}
    known = {k for k in sd if k.startswith(("fc.", "layers.0.", "norm.", "lm_head."))}
    refuse_unknown(sd, known, NAME)
    tensors = {_rename_out(k): v for k, v in sd.items()}
    tensors.update(e3.vocab_maps(head))
    write_tensors(out / "model.safetensors", cast(tensors, DTYPES[dtype]))
    config = e3.llama_fields(head.config, target, dtype)
    config.update(
        architectures=[ARCHITECTURE],
        draft_vocab_size=head.config.draft_vocab_size,
        # SGLang adds 1 to these ids (it captures the *input* of layer id+1), so id = hidden_states index - 1.
        eagle_config={
            "eagle_aux_hidden_state_layer_ids": [i - 1 for i in head.config.feature_layers],
            "use_aux_hidden_state": True,
        },
    )
    write_json(out / "config.json", config)
    return [
        "```bash",
        f"python -m sglang.launch_server --model {target.path} --speculative-algorithm EAGLE3 \\",
        f"    --speculative-draft-model-path {out}",
        "```",
        "The same folder loads in the SafeAILab EAGLE repo (`EaModel.from_pretrained(ea_model_path=...)`).",
        "**Not for vLLM**: vLLM loads this folder without error but reads eagle_aux_hidden_state_layer_ids "
        "without SGLang's +1, so it feeds the draft the wrong target layers (still lossless, lower acceptance). "
        "For vLLM export with `--format speculators`.",
    ]


def matches(src: Path) -> bool:
    cfg = src / "config.json"
    return cfg.is_file() and ARCHITECTURE in (read_json(cfg).get("architectures") or [])


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    ids = (c.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    if ids:
        feature_layers = [i + 1 for i in ids]
    elif target is not None:
        feature_layers = e3.engine_capture_defaults(target.num_layers)
    else:
        raise ExportError(
            f"{src}: no eagle_config.eagle_aux_hidden_state_layer_ids; pass --target so the engines' default "
            "capture layers (2, L/2, L-3) can be resolved"
        )
    e3.check_imported_layers(
        feature_layers, src, target, "eagle_config.eagle_aux_hidden_state_layer_ids (SGLang numbering, +1)"
    )
    raw = read_tensors(src)
    draft_vocab = int(c.get("draft_vocab_size") or c["vocab_size"])
    if int(c.get("num_hidden_layers", 1)) != 1:
        raise ExportError(f"{src}: num_hidden_layers={c['num_hidden_layers']}; this layout has one midlayer")
    if c.get("tie_word_embeddings") or "lm_head.weight" not in raw:
        raise ExportError(f"{src}: no own lm_head.weight (tied to the embedding); not supported")
    cfg = e3.head_config_from_llama(c, draft_vocab, feature_layers, str(src))
    ours: dict[str, torch.Tensor] = {}
    for k, v in raw.items():
        if k in ("t2d", "embed_tokens.weight"):
            continue  # t2d is implied by d2t; the embedding is the target's (the engines share it too)
        if k == "d2t":
            ours["d2t"] = e3.absolute_d2t(v)
        elif k.startswith("midlayer."):
            ours["layers.0." + k[len("midlayer.") :]] = v
        else:
            ours[k] = v
    ours.setdefault("d2t", torch.arange(draft_vocab))
    return e3.build_head(cfg, ours, str(src)), {"imported_format": NAME}
