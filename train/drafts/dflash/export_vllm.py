"""DFlash in the layout vLLM 0.32 loads (`method: "dflash"`): vllm/model_executor/models/qwen3_dflash.py's
`DFlashDraftModel`, which is also the layout published DFlash checkpoints use (z-lab's *-DFlash-b16).

config.json: a Qwen3 config of the draft's sizes, `architectures ["DFlashDraftModel"]`, `layer_types` all
"full_attention" (= bidirectional within the block; vLLM reads "sliding_attention" as causal), `block_size`
(vLLM does not read it: it drafts `num_speculative_tokens`; the card prints block_size - 1), and
`dflash_config {"mask_token_id", "target_layer_ids"}`. vLLM captures hidden_states[id + 1] for each
target layer id (eagle3_utils.get_eagle3_aux_layers_from_config adds 1), so target_layer_ids = our
feature_layers - 1, ascending (the target hands them over in layer order). No `eagle_aux_hidden_state_layer_ids`:
vLLM would read that key first, without the +1.
model.safetensors: our state dict's names are vLLM's (fc, hidden_norm, norm, layers.i.{self_attn.{q,k,v,o}_proj,
self_attn.{q,k}_norm, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}); embed_tokens and
lm_head are absent and shared from the target. A separate mask embedding goes to mask_embedding.pt
({"mask_token_id", "embedding"}; vLLM's _read_mask_embedding), never as a tensor in the weights (vLLM asserts
against `mask_hidden`). vLLM's DFlash load_weights returns nothing, so a tensor missing here is left
uninitialised without an error: `load` below refuses a folder that lacks any, and the export writes all.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from train.drafts.dflash.head import DFlashHead, DFlashHeadConfig
from train.export_formats.card import vllm_commands
from train.export_formats.common import (
    DTYPES,
    ExportError,
    Target,
    cast,
    read_json,
    read_tensors,
    write_json,
    write_tensors,
)
from train.modeling.draft.layers import target_rope

NAME = "dflash"
ARCHITECTURE = "DFlashDraftModel"
MASK_FILE = "mask_embedding.pt"


def check_servable(cfg: DFlashHeadConfig, target: Target) -> None:
    """Refuse, in one line naming the key, what vLLM would misread or fail on later."""
    if cfg.block_size < 2:
        raise ExportError(
            f"{NAME}: block_size={cfg.block_size}: expected >= 2 (the anchor and >= 1 mask slot)"
        )
    n = target.num_layers
    ids = list(cfg.feature_layers)
    if not ids or any(not 1 <= i <= n - 1 for i in ids):
        raise ExportError(
            f"{NAME}: dflash_config.target_layer_ids from feature_layers={ids}: each must lie in 1..{n - 1} "
            f"(vLLM captures hidden_states[id + 1] of the target's {n} layers, the last one excluded)"
        )
    if ids != sorted(set(ids)):
        raise ExportError(
            f"{NAME}: dflash_config.target_layer_ids from feature_layers={ids}: expected distinct ascending "
            "ids (vLLM concatenates the captured layers in layer order, once each)"
        )
    vocab = int(target.config.vocab_size)
    if not 0 <= cfg.mask_token_id < vocab:
        raise ExportError(
            f"{NAME}: dflash_config.mask_token_id={cfg.mask_token_id}: outside the target's embedding "
            f"(0..{vocab - 1}); pick an id below {vocab}"
        )
    if cfg.hidden_size != int(target.config.hidden_size):
        raise ExportError(
            f"{NAME}: hidden_size={cfg.hidden_size} != the target's {target.config.hidden_size} "
            "(the head reads the target's embedding and LM head)"
        )


def vllm_config(cfg: DFlashHeadConfig, target: Target, dtype: str) -> dict:
    tc = target.config
    rope = {**(cfg.rope_scaling or {"rope_type": "default"}), "rope_theta": cfg.rope_theta}
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "qwen3",
        "hidden_size": cfg.hidden_size,
        "target_hidden_size": int(tc.hidden_size),
        "intermediate_size": cfg.intermediate_size,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "num_hidden_layers": cfg.num_layers,
        "layer_types": ["full_attention"] * cfg.num_layers,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": rope,
        "max_position_embeddings": int(
            cfg.max_position_embeddings or getattr(tc, "max_position_embeddings", 4096)
        ),
        "vocab_size": int(tc.vocab_size),
        "hidden_act": "silu",
        "attention_bias": False,
        "tie_word_embeddings": False,
        "num_target_layers": target.num_layers,
        "block_size": cfg.block_size,
        "dflash_config": {
            "mask_token_id": cfg.mask_token_id,
            "target_layer_ids": [i - 1 for i in cfg.feature_layers],
        },
        "torch_dtype": dtype,
    }


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    if not isinstance(head, DFlashHead):
        raise ExportError(f"{NAME}: only DFlash heads are exported in this format, not {type(head).__name__}")
    cfg = head.config
    check_servable(cfg, target)
    sd = dict(head.state_dict())
    mask = sd.pop("mask_embedding", None)
    write_tensors(out / "model.safetensors", cast(sd, DTYPES[dtype]))
    if mask is not None:
        emb = mask.detach().to(DTYPES[dtype]).cpu().clone()
        torch.save({"mask_token_id": cfg.mask_token_id, "embedding": emb}, out / MASK_FILE)
    write_json(out / "config.json", vllm_config(cfg, target, dtype))
    return [
        *vllm_commands(target.path, out, "dflash", cfg.block_size - 1),
        f"num_speculative_tokens is block_size - 1 = {cfg.block_size - 1}, the mask slots the head was trained "
        "on; fewer work too, more draft positions it never learned.",
    ]


def matches(src: Path) -> bool:
    cfg = src / "config.json"
    return cfg.is_file() and ARCHITECTURE in (read_json(cfg).get("architectures") or [])


def expected_tensors(cfg: DFlashHeadConfig) -> set[str]:
    return set(DFlashHead(cfg).state_dict()) - {"mask_embedding"}


def _block_size(src: Path, c: dict, dc: dict) -> int:
    """z-lab's first checkpoints (Qwen3-*-DFlash-b16) keep block_size at the top level, later ones (Qwen3.5)
    inside dflash_config; vLLM reads neither (it drafts num_speculative_tokens), so both are accepted."""
    top, inner = c.get("block_size"), dc.get("block_size")
    if top is None and inner is None:
        raise ExportError(
            f"{src}/config.json: no block_size (nor dflash_config.block_size); a DFlash draft is not servable "
            "without it"
        )
    if top is not None and inner is not None and int(top) != int(inner):
        raise ExportError(f"{src}/config.json: block_size={top} != dflash_config.block_size={inner}")
    return int(top if top is not None else inner)


def _refuse_other_attention(src: Path, c: dict, dc: dict) -> None:
    """Our head attends to the whole verified context and bidirectionally within its block. vLLM 0.32 also
    serves DFlash variants that do not (qwen3_dflash.py `_resolve_layer_attention`): sliding windows
    (`layer_types` "sliding_attention", or `dflash_config.use_swa`), causal blocks (`is_causal`,
    `dflash_config.causal`, or a sliding layer without either), attention sinks, and drafts fed without the
    target's hidden states. Importing one as ours would draft something else than vLLM does: refused, naming
    the key. (`use_sliding_window` alone is a Qwen3 key vLLM does not read here: it does not matter.)"""
    checks = [
        ("layer_types", any(lt != "full_attention" for lt in c.get("layer_types") or []),
         "a sliding-window or causal layer type"),
        ("dflash_config.use_swa", bool(dc.get("use_swa")), "sliding-window attention on every layer"),
        ("is_causal", bool(c.get("is_causal")), "causal attention within the block"),
        ("dflash_config.causal", bool(dc.get("causal")), "causal attention within the block"),
        ("dflash_config.attention_sink_bias" if "attention_sink_bias" in dc else "add_swa_attention_sink_bias",
         bool(dc.get("attention_sink_bias", c.get("add_swa_attention_sink_bias"))), "attention-sink biases"),
        ("dflash_config.use_aux_hidden_state", dc.get("use_aux_hidden_state", True) is False,
         "a draft that does not read the target's hidden states"),
    ]  # fmt: skip
    for key, present, what in checks:
        if present:
            raise ExportError(
                f"{src}/config.json: {key}: {what}; our DFlash head attends to the whole context and "
                "bidirectionally within its block (all layer_types full_attention, no use_swa, causal, sinks)"
            )


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    dc = c.get("dflash_config") or {}
    for key, value in (("dflash_config.mask_token_id", dc.get("mask_token_id")),
                       ("dflash_config.target_layer_ids", dc.get("target_layer_ids"))):  # fmt: skip
        if value is None:
            raise ExportError(f"{src}/config.json: no {key}; a DFlash draft is not servable without it")
    block_size = _block_size(src, c, dc)
    _refuse_other_attention(src, c, dc)
    heads = int(c["num_attention_heads"])
    mask_file = src / MASK_FILE
    cfg = DFlashHeadConfig(
        hidden_size=int(c["hidden_size"]),
        intermediate_size=int(c["intermediate_size"]),
        num_heads=heads,
        num_kv_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=int(c.get("head_dim") or int(c["hidden_size"]) // heads),
        vocab_size=int(c["vocab_size"]),
        feature_layers=[int(i) + 1 for i in dc["target_layer_ids"]],
        num_layers=int(c["num_hidden_layers"]),
        block_size=block_size,
        mask_token_id=int(dc["mask_token_id"]),
        separate_mask_embedding=mask_file.is_file(),
        rms_norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        **target_rope(c),
    )
    if target is not None:
        check_servable(cfg, target)
    raw = read_tensors(src)
    want = expected_tensors(cfg)
    missing, extra = (
        sorted(want - set(raw)),
        sorted(set(raw) - want - {"embed_tokens.weight", "lm_head.weight"}),
    )
    if missing or extra:
        raise ExportError(f"{src}: DFlash tensors missing {missing}, unknown {extra} (vLLM would not say so)")
    ours = {k: raw[k] for k in want}
    if cfg.separate_mask_embedding:
        state = torch.load(mask_file, map_location="cpu", weights_only=True)
        if isinstance(state, dict):
            if int(state.get("mask_token_id", cfg.mask_token_id)) != cfg.mask_token_id:
                raise ExportError(f"{mask_file}: mask_token_id != dflash_config.mask_token_id")
            state = state["embedding"]
        ours["mask_embedding"] = state.reshape(-1)
    head = DFlashHead(cfg)
    head.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return head, {"imported_format": NAME}
