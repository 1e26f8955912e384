"""Name -> draft head class. A new draft architecture is a new file plus one entry here."""

from __future__ import annotations

from torch import nn

from train.modeling.draft.eagle import EagleHead

DRAFT_HEADS: dict[str, type[nn.Module]] = {"eagle": EagleHead}


def head_class(name: str) -> type[nn.Module]:
    if name not in DRAFT_HEADS:
        raise ValueError(f"unknown draft architecture {name!r}; known: {sorted(DRAFT_HEADS)}")
    return DRAFT_HEADS[name]
