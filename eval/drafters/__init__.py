"""Loading a drafter for eval: `load_drafter(path, target)` reads one of our exports (its `head.architecture`
names the algorithm, whose spec makes the drafter: train/drafts/<name>/drafter.py), a checkpoint an
algorithm runs as it is (a plain Hugging Face causal LM: the spec's `load_plain`), or "random" (an untrained
head of the default algorithm, the floor to beat). Nothing here is keyed by an algorithm's name; the drafter
protocol, tree search, kv cache and sampling the drafters share live in train/decoding/.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import nn

from data.fingerprint import check_target
from train.decoding.drafter import CHAIN, TREE, Drafter, DraftSettings, DraftTree, NoDrafter
from train.drafts.io import load_draft
from train.drafts.registry import DEFAULT_DRAFT, algorithms, spec_for
from train.drafts.spec import BuildContext
from train.modeling.target import FrozenTarget

__all__ = [
    "CHAIN",
    "RANDOM_DRAFT",
    "TREE",
    "DraftSettings",
    "DraftTree",
    "Drafter",
    "NoDrafter",
    "load_drafter",
]

RANDOM_DRAFT = "random"


def _check_export(path: str, head: nn.Module, meta: dict[str, Any], target: FrozenTarget) -> None:
    hidden = getattr(head.config, "hidden_size", target.hidden_size)
    if hidden != target.hidden_size:
        raise ValueError(f"{path}: draft hidden size {hidden} != target hidden size {target.hidden_size}")
    try:
        check_target(f"draft {path}", meta, target.fingerprint())
    except ValueError as err:  # eval may measure a draft on another target: say so, do not refuse
        warnings.warn(f"{err}: acceptance measures transfer, not the draft as trained", stacklevel=3)


def _no_data() -> Any:
    raise ValueError(f"draft_path={RANDOM_DRAFT}: the default draft's builder asked for training data")


def random_head(target: FrozenTarget) -> nn.Module:
    """An untrained head of the default algorithm with its default config, shaped by the target."""
    spec = spec_for(DEFAULT_DRAFT)
    return spec.build(spec.default_config(), target, BuildContext(Path("."), _no_data))


def load_drafter(draft_path: str, target: FrozenTarget) -> tuple[Drafter, dict[str, Any]]:
    """(drafter, metadata for the report)."""
    if draft_path == RANDOM_DRAFT:
        spec = spec_for(DEFAULT_DRAFT)
        head = random_head(target).to(device=target.device, dtype=target.dtype).eval()
        return spec.drafter(head, target), {"draft": RANDOM_DRAFT, "architecture": spec.name}
    cfg = Path(draft_path) / "config.json"
    if cfg.is_file() and '"format"' not in cfg.read_text():  # not one of our exports: a checkpoint as it is
        plain = [s for s in algorithms() if s.load_plain is not None]
        if len(plain) != 1:
            raise ValueError(
                f"{draft_path}: not a draftforge export, and {len(plain)} algorithms load plain folders"
            )
        return plain[0].load_plain(draft_path, target), {"draft": draft_path, "architecture": plain[0].name}
    head, meta = load_draft(draft_path, target_fingerprint=target.fingerprint(), vocab_size=target.vocab_size)
    _check_export(draft_path, head, meta, target)
    arch = head.config.architecture
    head = head.to(device=target.device, dtype=target.dtype).eval()
    return spec_for(arch).drafter(head, target), {**meta, "architecture": arch}
