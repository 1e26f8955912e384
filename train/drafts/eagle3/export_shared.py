"""Pieces the two EAGLE-3 layouts share (SGLang/EAGLE-3 original and vLLM speculators): the Llama-style
config fields, the d2t/t2d convention, and the checks that our head is representable at all.

Facts (read in the loaders, see tests/fixtures/export_formats/*.md):
- d2t on disk holds offsets, target_id = draft_id + d2t[draft_id] (SGLang llama_eagle3.py load_weights,
  vLLM llama_eagle3.py compute_logits); t2d is a bool mask over the target vocabulary (both loaders skip it).
- fc is Linear(3 * target_hidden, hidden, bias=False) in both: exactly three fused target layers.
- Layer 0's q/k/v read 2H = cat(input_layernorm(embeds), hidden_norm(feature)); residual = raw feature.
- The engines' default capture layers are hidden_states[2], [L/2], [L-3]; an explicit list is read from
  the draft config, in different conventions per engine (see eagle3_sglang.py and speculators.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.export_formats.common import (
    ExportError,
    Target,
    llama_layer_fields,
)
from train.modeling.draft.layers import target_rope

# Tensors of our "draftforge" EAGLE-3 layout that the published layout has no place for.
DRAFTFORGE_ONLY = ("input_proj.weight", "embed_norm.weight", "feature_norm.weight")


def check_representable(head: Eagle3Head, fmt: str, target: Target) -> None:
    cfg = head.config
    if cfg.layout != "eagle3":
        raise ExportError(
            f"{fmt}: this head uses the draftforge EAGLE-3 layout; its tensors {list(DRAFTFORGE_ONLY)} have no "
            "counterpart in the EAGLE-3 loaders (q/k/v read the 2H concatenation directly). Train with "
            "layout=eagle3 (Eagle3HeadConfig.layout) to serve it in SGLang/vLLM."
        )
    if len(cfg.feature_layers) != 3:
        raise ExportError(
            f"{fmt}: fc.weight fuses {len(cfg.feature_layers)} target layers; the engines' fc is "
            "Linear(3 * hidden, hidden): exactly 3 feature_layers are required"
        )
    if len(set(cfg.feature_layers)) != 3:
        raise ExportError(
            f"{fmt}: feature_layers {cfg.feature_layers} repeat a layer; the engines capture each layer once "
            "(vLLM then hands fc fewer than 3 features and fails), so 3 distinct layers are required"
        )
    bad = [i for i in cfg.feature_layers if not 1 <= i <= target.num_layers - 1]
    if bad:
        raise ExportError(
            f"{fmt}: feature_layers {bad} are not capturable by the engines: they capture the input of a "
            f"decoder layer, i.e. hidden_states[1..{target.num_layers - 1}] of this target"
        )
    if cfg.vocab_size != int(target.config.vocab_size):
        raise ExportError(
            f"{fmt}: head vocab_size {cfg.vocab_size} != target vocab_size {target.config.vocab_size}"
        )


def check_imported_layers(ids: list[int], src: object, target: Target | None, what: str) -> None:
    """An importer that misreads the layer numbering would feed the head other target layers, silently: refuse
    ids the target cannot capture, and ids that differ from those our own export recorded (draftforge.json)."""
    if target is not None:
        bad = [i for i in ids if not 1 <= i <= target.num_layers - 1]
        if bad:
            raise ExportError(
                f"{src}: {what} give hidden_states {bad}, outside 1..{target.num_layers - 1} of the target "
                f"({target.num_layers} layers): the folder's layer numbering does not match this target"
            )
    sidecar = Path(str(src)) / "draftforge.json"
    if sidecar.is_file():
        trained = (json.loads(sidecar.read_text()).get("head") or {}).get("feature_layers")
        if trained is not None and list(trained) != list(ids):
            raise ExportError(
                f"{src}: {what} resolve to hidden_states {ids}, but the head was trained on {trained} "
                "(draftforge.json): the folder's layer numbering was changed or is read in another convention"
            )


def llama_fields(cfg: Eagle3HeadConfig, target: Target, dtype: str) -> dict:
    """A LlamaConfig-shaped dict for the draft: what SGLang/vLLM build the draft's layers from."""
    return {
        **llama_layer_fields(cfg, target, dtype),
        # SGLang ties lm_head to embed_tokens when this is true: the draft has its own (reduced) LM head.
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
    }


def head_config_from_llama(
    c: dict, draft_vocab_size: int, feature_layers: list[int], where: str
) -> Eagle3HeadConfig:
    if c.get("attention_bias") or c.get("mlp_bias") or c.get("bias"):
        raise ExportError(f"{where}: attention/mlp/fc bias is set; our EAGLE-3 head has no biases")
    if c.get("hidden_act", "silu") != "silu":
        raise ExportError(f"{where}: hidden_act={c['hidden_act']!r}; our layers use silu")
    if c.get("target_hidden_size") not in (None, c["hidden_size"]):
        raise ExportError(
            f"{where}: target_hidden_size {c['target_hidden_size']} != hidden_size (not supported)"
        )
    heads = int(c["num_attention_heads"])
    return Eagle3HeadConfig(
        hidden_size=int(c["hidden_size"]),
        intermediate_size=int(c["intermediate_size"]),
        num_heads=heads,
        num_kv_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=int(c.get("head_dim") or c["hidden_size"] // heads),
        vocab_size=int(c["vocab_size"]),
        draft_vocab_size=int(draft_vocab_size),
        feature_layers=list(feature_layers),
        num_layers=int(c.get("num_hidden_layers", 1)),
        **target_rope(c),  # rope_theta and any rope_scaling (published Llama-3.1 drafts: llama3)
        rms_norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        architecture="eagle3" if int(c.get("num_hidden_layers", 1)) == 1 else "scylla",
        layout="eagle3",
    )


def vocab_maps(head: Eagle3Head) -> dict[str, torch.Tensor]:
    d2t = head.d2t.detach().cpu().long()
    offsets = d2t - torch.arange(len(d2t))
    t2d = torch.zeros(head.config.vocab_size, dtype=torch.bool)
    t2d[d2t] = True
    return {"d2t": offsets, "t2d": t2d}


def absolute_d2t(offsets: torch.Tensor) -> torch.Tensor:
    return offsets.long() + torch.arange(len(offsets))


def engine_capture_defaults(num_layers: int) -> list[int]:
    """The engines' default capture points (SGLang llama.py / vLLM llama.py), as hidden_states indices."""
    return [2, num_layers // 2, num_layers - 3]


def build_head(cfg: Eagle3HeadConfig, ours: dict[str, torch.Tensor], where: str) -> Eagle3Head:
    head = Eagle3Head(cfg)
    missing, unexpected = head.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in ours.items()}, strict=False
    )
    if missing or unexpected:
        raise ExportError(f"{where}: missing tensors {missing}, unexpected {unexpected}")
    return head
