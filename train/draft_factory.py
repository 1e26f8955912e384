"""Draft construction from the run config: dimensions default to the target's, or an export seeds it."""

from __future__ import annotations

from torch import nn

from train.config import TrainConfig
from train.modeling.draft.eagle import EagleHeadConfig
from train.modeling.draft.io import load_draft
from train.modeling.draft.registry import head_class
from train.modeling.target import FrozenTarget


def head_config(cfg: TrainConfig, target: FrozenTarget) -> EagleHeadConfig:
    """Draft dimensions default to the target's so the head reads and writes the target's feature space."""
    tc = target.model.config
    heads = cfg.draft.num_heads or tc.num_attention_heads
    rope = getattr(tc, "rope_parameters", None) or {}
    return EagleHeadConfig(
        hidden_size=tc.hidden_size,
        intermediate_size=cfg.draft.intermediate_size or tc.intermediate_size,
        num_heads=heads,
        num_kv_heads=cfg.draft.num_kv_heads or getattr(tc, "num_key_value_heads", None) or heads,
        head_dim=tc.hidden_size // heads,
        num_layers=cfg.draft.num_layers,
        # transformers 5 keeps rope_theta inside rope_parameters; 4.x had it at the top level.
        rope_theta=float(rope.get("rope_theta", getattr(tc, "rope_theta", 10000.0))),
        rms_norm_eps=float(getattr(tc, "rms_norm_eps", 1e-6)),
        vocab_size=target.vocab_size,
        architecture=cfg.draft.name,
    )


def build_draft(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    if cfg.stage.init_from:
        head, _ = load_draft(cfg.stage.init_from, target.fingerprint(), target.vocab_size)
        return head
    cls = head_class(cfg.draft.name)
    return cls(head_config(cfg, target))
