"""One spec per draft architecture: everything `train` needs to know about a draft, in one place.

A spec names its head class (a plain nn.Module under train/modeling/draft/), how to build one from the run
config and the target, its objective, the `draft.*` fields it reads, and how many frozen target parameters
it uses at decode time. `register` adds it to `SPECS` under its name and each alias (scylla is an alias of
eagle3: the same head with more layers). Eval's drafters (`eval.drafters.DRAFTERS`) and `conf/draft/*.yaml`
use the same names; tests/test_draft_registry.py checks that the three agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from torch import nn

from train.modeling.target import FrozenTarget
from train.objectives.base import LossSettings, Objective
from train.settings import DraftConfig


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need besides the draft config and the target."""

    output_dir: Path  # where a builder writes what the run made (EAGLE-3: draft_vocab.safetensors)
    # Counts of the training data's loss-masked tokens (length = tokenizer size), from the blocks the
    # feature source already built: a builder never reads the data itself. Called only when needed.
    token_counts: Callable[[], np.ndarray]


@dataclass(frozen=True)
class DraftSpec:
    name: str  # conf/draft/<name>.yaml, draft.name, the export's head.architecture, eval's DRAFTERS key
    head: type[nn.Module]  # rebuilt from an export by `head(head.config_class(**config))`
    build: Callable[[DraftConfig, FrozenTarget, BuildContext], nn.Module]
    objective: Callable[[LossSettings], Objective]
    # The draft.* fields this architecture reads (besides name); setting any other one is refused.
    fields: frozenset[str]
    # Target parameters the draft uses but does not train (embedding, LM head): its decode-time size.
    frozen_shared_params: Callable[[FrozenTarget], int]
    aliases: tuple[str, ...] = ()  # other names for this spec, e.g. a deeper variant with its own conf yaml


SPECS: dict[str, DraftSpec] = {}


def register(spec: DraftSpec) -> DraftSpec:
    unknown = spec.fields - {f.name for f in fields(DraftConfig)}
    if unknown:
        raise TypeError(f"draft spec {spec.name!r}: fields {sorted(unknown)} are not DraftConfig fields")
    for name in (spec.name, *spec.aliases):
        if name in SPECS:
            raise ValueError(f"draft {name!r} is registered twice")
        SPECS[name] = spec
    return spec


def spec_for(name: str) -> DraftSpec:
    if name not in SPECS:
        raise ValueError(f"unknown draft architecture {name!r}; known: {sorted(SPECS)}")
    return SPECS[name]


def unused_settings(cfg: DraftConfig) -> list[str]:
    """draft.* fields set away from their default that the chosen architecture never reads."""
    spec, default = spec_for(cfg.name), DraftConfig()
    return [
        f"draft.{f.name}"
        for f in fields(DraftConfig)
        if f.name != "name" and f.name not in spec.fields and getattr(cfg, f.name) != getattr(default, f.name)
    ]


def embedding_params(target: FrozenTarget) -> int:
    return target.model.get_input_embeddings().weight.numel()


def lm_head_params(target: FrozenTarget) -> int:
    return target.lm_head.weight.numel()


def embedding_and_lm_head(target: FrozenTarget) -> int:
    embed, head = target.model.get_input_embeddings().weight, target.lm_head.weight
    return embed.numel() + (0 if embed.data_ptr() == head.data_ptr() else head.numel())  # tied: counted once


def no_shared_params(target: FrozenTarget) -> int:
    return 0
