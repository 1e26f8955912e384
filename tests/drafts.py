"""The draft algorithms tests run over, from the registry (a new folder under train/drafts/ is tested too),
and the overrides that keep a unit test's draft cheap."""

from __future__ import annotations

from dataclasses import fields

from train.drafts.registry import SPECS, algorithms

ALGORITHMS = [spec.name for spec in algorithms()]  # each algorithm once (aliases are the same code)


def quick(name: str) -> list[str]:
    """A reduced draft vocabulary is built from the training data (a pass over the corpus): a config that has
    one uses the target's whole vocabulary instead, which the unit tests' checks do not depend on."""
    return (
        ["draft.draft_vocab_size=null"]
        if "draft_vocab_size" in {f.name for f in fields(SPECS[name].config)}
        else []
    )


def layers(cfg: object, depth: int) -> tuple[int, ...]:
    """The target layers the run's draft fuses (its spec's one answer), for calls of target.features."""
    return SPECS[cfg.draft.name].target_layers(cfg.draft, depth)  # type: ignore[attr-defined]
