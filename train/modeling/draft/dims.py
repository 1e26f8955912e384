"""Draft layer sizes read from the target's HF config: the one place that knows where each field lives."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from train.modeling.draft.layers import target_rope


def attention_dims(
    config: PretrainedConfig,
    num_layers: int = 1,
    intermediate_size: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
) -> dict[str, Any]:
    """Decoder-layer sizes of a draft shaped like one target layer; a None override takes the target's."""
    heads = num_heads or config.num_attention_heads
    # A head count of its own changes the head width; otherwise the target's (when it states one).
    head_dim = config.hidden_size // heads if num_heads else None
    return {
        "hidden_size": config.hidden_size,
        "intermediate_size": intermediate_size or config.intermediate_size,
        "num_heads": heads,
        "num_kv_heads": num_kv_heads or getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": head_dim or getattr(config, "head_dim", None) or config.hidden_size // heads,
        "num_layers": num_layers,
        **target_rope(config),  # the draft rotates positions as its target does (any rope type)
        "rms_norm_eps": float(getattr(config, "rms_norm_eps", 1e-6)),
    }
