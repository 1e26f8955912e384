"""The one registration of a draft algorithm: its `DraftSpec`, the floor every algorithm folder stands on.

An algorithm is a folder `train/drafts/<name>/` whose `__init__.py` defines `SPEC = DraftSpec(...)`; the
registry (`train/drafts/registry.py`) finds it by listing the folders, so adding one edits nothing else. The
spec carries everything the rest of the pipeline asks of an algorithm: the config dataclass (whose defaults
are the only defaults: Hydra's `draft/<name>` option is registered from it), the head builder, the objective,
the eval drafter, the export formats and each serving engine's (format, method), and the target features it
needs. What algorithms share lives below this file: train/modeling (target, layers, dims, masks),
train/losses.py, train/objectives/base.py, train/decoding (drafter protocol, trees, kv cache, sampling) and
train/export_formats (export helpers and the card).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from torch import nn

from train.decoding.drafter import Drafter
from train.modeling.target import FrozenTarget
from train.objectives.base import LossSettings, Objective


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need besides the draft config and the target."""

    output_dir: Path  # where a builder writes what the run made (EAGLE-3: draft_vocab.safetensors)
    # Counts of the training data's loss-masked tokens (length = tokenizer size), from the blocks the
    # feature source already built: a builder never reads the data itself. Called only when needed.
    token_counts: Callable[[], np.ndarray]


@dataclass(frozen=True)
class DraftSpec:
    name: str  # the folder's name: draft=<name>, draft.name, the export's head.architecture
    config: type  # dataclass with a `name` field; its defaults are the only defaults (no conf/draft yaml)
    head: type[nn.Module]  # rebuilt from an export by `head(head.config_class(**config))`
    build: Callable[[Any, FrozenTarget, BuildContext], nn.Module]  # (draft config, target, ctx) -> head
    objective: Callable[[LossSettings], Objective]
    drafter: Callable[[nn.Module, FrozenTarget], Drafter]  # a loaded head (eval mode) -> its drafter
    # Which target hidden_states the draft reads beyond the last one, for a target of `depth` layers, from its
    # draft config or its head config (both carry what decides it). Training, export, import and eval all
    # ask this one function; () = the last hidden state and logits only.
    target_layers: Callable[[Any, int], tuple[int, ...]]
    # Target parameters the draft uses but does not train (embedding, LM head): its decode-time size.
    frozen_shared_params: Callable[[FrozenTarget], int]
    # Export/import format modules (NAME, export, matches, load; see train/export_formats/__init__.py).
    formats: tuple[ModuleType, ...] = ()
    # serving engine -> (format it loads the draft from, the engine's speculative method name)
    serve: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # serving engine -> further keys of its speculative config beside the method, e.g. P-EAGLE's
    # {"parallel_drafting": True} (vLLM serves it as "eagle3" with that switch on).
    serve_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # A checkpoint this algorithm drafts with as it is, not one of our exports (a plain HF causal LM folder):
    # (folder, target) -> drafter. At most one algorithm declares it; eval's load_drafter asks it.
    load_plain: Callable[[str, FrozenTarget], Drafter] | None = None
    # Other names for this algorithm and the config values they change, e.g. scylla = eagle3, 2 layers.
    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_dataclass(self.config) or "name" not in {f.name for f in fields(self.config)}:
            raise TypeError(f"draft spec {self.name!r}: config must be a dataclass with a `name` field")
        if set(self.serve_options) - set(self.serve):
            raise TypeError(f"draft spec {self.name!r}: serve_options for engines it does not serve")
        names = {f.name for f in fields(self.config)}
        for alias, values in self.aliases.items():
            unknown = set(values) - names
            if unknown:
                raise TypeError(
                    f"draft alias {alias!r}: {sorted(unknown)} are not {self.config.__name__} fields"
                )

    def speculative_config(self, engine: str, model: str, num_tokens: int) -> dict[str, Any]:
        """The engine's speculative config for a folder in this algorithm's served format (serve[engine])."""
        _, method = self.serve[engine]
        return {"method": method, "model": model, "num_speculative_tokens": num_tokens,
                **self.serve_options.get(engine, {})}  # fmt: skip

    def default_config(self, name: str | None = None) -> Any:
        """The config of `name` (this spec or one of its aliases) with nothing overridden."""
        name = name or self.name
        return self.config(**{**dict(self.aliases.get(name, {})), "name": name})


def no_target_layers(cfg: Any, depth: int) -> tuple[int, ...]:
    return ()


def embedding_params(target: FrozenTarget) -> int:
    return target.model.get_input_embeddings().weight.numel()


def lm_head_params(target: FrozenTarget) -> int:
    return target.lm_head.weight.numel()


def embedding_and_lm_head(target: FrozenTarget) -> int:
    embed, head = target.model.get_input_embeddings().weight, target.lm_head.weight
    return embed.numel() + (0 if embed.data_ptr() == head.data_ptr() else head.numel())  # tied: counted once


def no_shared_params(target: FrozenTarget) -> int:
    return 0
