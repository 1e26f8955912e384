"""Name -> draft head class. A new draft architecture is a new file plus one entry here."""

from __future__ import annotations

from torch import nn

from train.modeling.draft.dense import DenseDraft
from train.modeling.draft.eagle import EagleHead
from train.modeling.draft.eagle3 import Eagle3Head
from train.modeling.draft.medusa import MedusaHeads

# scylla is the deep EAGLE-3 head: same class, N decoder layers (the capacity axis of the scaling laws).
DRAFT_HEADS: dict[str, type[nn.Module]] = {
    "eagle": EagleHead,
    "eagle3": Eagle3Head,
    "scylla": Eagle3Head,
    "medusa": MedusaHeads,
    "dense": DenseDraft,
}


def head_class(name: str) -> type[nn.Module]:
    if name not in DRAFT_HEADS:
        raise ValueError(f"unknown draft architecture {name!r}; known: {sorted(DRAFT_HEADS)}")
    return DRAFT_HEADS[name]
