"""Draft construction from the run config: a fresh head from its spec (`train/drafts/`), or a previous
stage's export. Dimensions default to the target's, so a new target needs no draft settings at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from data.fingerprint import check_target
from train import distributed as dist
from train.config import TrainConfig
from train.drafts.io import load_draft
from train.drafts.registry import spec_for
from train.drafts.spec import BuildContext
from train.feature_source import FeatureSource, open_source
from train.modeling.target import FrozenTarget


def _init_from(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    """Seed a stage from a previous stage's export (weights only: optimizer and schedule start fresh)."""
    path = cfg.stage.init_from
    fingerprint = target.fingerprint()
    head, meta = load_draft(path, fingerprint, target.vocab_size)
    arch = head.config.architecture
    if arch != cfg.draft.name:
        raise ValueError(
            f"stage.init_from={path}: export is a {arch!r} draft, but draft.name={cfg.draft.name!r}"
        )
    spec = spec_for(cfg.draft.name)
    have, want = (
        spec.target_layers(head.config, target.num_layers),
        spec.target_layers(cfg.draft, target.num_layers),
    )
    if have != want:  # the feature source feeds the layers the run's config names (loss_seam.py)
        raise ValueError(f"stage.init_from={path}: export fuses target layers {list(have)}, this run's draft "
                         f"config {list(want)}: set draft.feature_layers={list(have)}")  # fmt: skip
    check_target(f"stage.init_from={path}: export", meta, fingerprint)
    dist.print0(f"[train] initialised from {path} ({meta.get('stage')}, {meta.get('tokens_seen')} tokens)")
    return head


def build_draft(cfg: TrainConfig, target: FrozenTarget, data: FeatureSource | None = None) -> nn.Module:
    """`data`: the run's feature source, whose blocks give the token counts a reduced vocabulary is chosen
    from. The trainer passes the one it built; without it (a test building a head) the source is opened
    here, and only if the builder asks for counts."""

    def token_counts() -> np.ndarray:
        source = data if data is not None else open_source(cfg.data, target.tokenizer)
        return source.token_counts(len(target.tokenizer))

    if cfg.stage.init_from:
        head = _init_from(cfg, target)
    else:
        ctx = BuildContext(output_dir=Path(cfg.output_dir), token_counts=token_counts)
        head = spec_for(cfg.draft.name).build(cfg.draft, target, ctx)
    return head
