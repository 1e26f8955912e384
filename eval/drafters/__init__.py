"""Drafters: one file per draft architecture, all behind the `Drafter` protocol (`eval.drafters.base`).

`load_drafter(path, target)` reads a draftforge export (its `head.architecture` picks the entry in
`DRAFTERS`, keyed by the names of the draft specs in `train/drafts/`, so an alias such as scylla finds its
spec's drafter), a plain Hugging Face causal-LM directory (a stand-alone dense draft), or "random".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from data.fingerprint import check_fingerprint
from eval.drafters.base import CHAIN, TREE, Drafter, DraftSettings, DraftTree, NoDrafter
from eval.drafters.dense import DenseDrafter, load_dense
from eval.drafters.dflash import DFlashDrafter
from eval.drafters.eagle import EagleDrafter, random_eagle_head
from eval.drafters.eagle3 import Eagle3Drafter
from eval.drafters.medusa import MedusaDrafter
from train.modeling.draft.io import base_architecture, load_draft
from train.modeling.target import FrozenTarget

__all__ = [
    "CHAIN",
    "DRAFTERS",
    "TREE",
    "DraftSettings",
    "DraftTree",
    "Drafter",
    "NoDrafter",
    "drafter_class",
    "load_drafter",
]

RANDOM_DRAFT = "random"

# draft spec name -> the drafter class around a loaded head of that architecture.
DRAFTERS: dict[str, type] = {
    "eagle": EagleDrafter,
    "eagle3": Eagle3Drafter,
    "medusa": MedusaDrafter,
    "dense": DenseDrafter,
    "dflash": DFlashDrafter,
}
# How a drafter is made from an export's head, where that is not `cls(head, target)`.
_FROM_EXPORT: dict[str, Callable[[nn.Module, FrozenTarget], Drafter]] = {
    "dense": lambda head, target: DenseDrafter(head.model),  # our export wraps the HF model
}


def drafter_class(architecture: str) -> type:
    """The drafter for an export's `head.architecture` (an alias such as scylla maps to its spec)."""
    name = base_architecture(architecture)
    if name not in DRAFTERS:
        raise ValueError(f"no eval drafter for architecture {architecture!r}; known: {sorted(DRAFTERS)}")
    return DRAFTERS[name]


def _check_export(path: str, head: nn.Module, meta: dict[str, Any], target: FrozenTarget) -> None:
    hidden = getattr(head.config, "hidden_size", target.hidden_size)
    if hidden != target.hidden_size:
        raise ValueError(f"{path}: draft hidden size {hidden} != target hidden size {target.hidden_size}")
    have = target.fingerprint()["target_fingerprint"]
    try:
        check_fingerprint(f"draft {path}", "target", meta.get("target_fingerprint"), have, meta.get("target"),
                          target.name_or_path)  # fmt: skip
    except ValueError as err:  # eval may measure a draft on another target: say so, do not refuse
        warnings.warn(f"{err}: acceptance measures transfer, not the draft as trained", stacklevel=3)


def load_drafter(draft_path: str, target: FrozenTarget) -> tuple[Drafter, dict[str, Any]]:
    """(drafter, metadata for the report)."""
    if draft_path == RANDOM_DRAFT:
        head = random_eagle_head(target).to(device=target.device, dtype=target.dtype).eval()
        return EagleDrafter(head, target), {"draft": RANDOM_DRAFT, "architecture": "eagle"}
    cfg = Path(draft_path) / "config.json"
    if cfg.is_file() and '"format"' not in cfg.read_text():  # a plain HF model directory, not an export
        model = load_dense(draft_path, target)
        return DenseDrafter(model), {"draft": draft_path, "architecture": "dense"}
    head, meta = load_draft(draft_path, target_fingerprint=target.fingerprint(), vocab_size=target.vocab_size)
    _check_export(draft_path, head, meta, target)
    arch = head.config.architecture
    cls = drafter_class(arch)
    make = _FROM_EXPORT.get(base_architecture(arch), cls)
    head = head.to(device=target.device, dtype=target.dtype).eval()
    return make(head, target), {**meta, "architecture": arch}
