"""Which target layers an EAGLE-3 head fuses: the one home of that fact for training, export, import and eval
(SPEC.target_layers)."""

from __future__ import annotations

from typing import Any


def default_layers(depth: int) -> list[int]:
    """Low, middle and high target layers (hidden_states indices) of a target with `depth` decoder layers,
    as EAGLE-3 fuses them. (The serving engines capture other layers by default: export_shared.engine_capture_defaults.)"""
    return sorted({1, max(1, depth // 2), max(1, depth - 1)})


def target_layers(cfg: Any, depth: int) -> tuple[int, ...]:
    """cfg: the draft config (draft.feature_layers, None = the default) or a built head's config."""
    return tuple(cfg.feature_layers or default_layers(depth))
