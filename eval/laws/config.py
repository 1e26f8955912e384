"""Typed, strict schema of one sweep point (conf/sweep/point.yaml); converted once, in `eval.laws.point`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.paths import REPO_ROOT
from train.modeling.target import TargetConfig
from train.pipeline import target_overrides

AXES = ("tokens", "depth", "batch", "block")


@dataclass
class PointEvalConfig:
    """How a point's draft is decoded; every (temperature, mode) pair is one `eval` run."""

    temperatures: list[float] = field(default_factory=lambda: [0.0, 1.0])
    modes: list[str] = field(default_factory=lambda: ["chain", "tree"])
    batch_size: int = 1  # the batch-size axis
    tree_budgets: list[int] = field(default_factory=list)  # extra tree sizes decoded at temperature 0
    overrides: list[str] = field(default_factory=list)  # more `python -m eval` keys (dotted)


@dataclass
class PointConfig:
    name: str = "tiny"  # the sweep: results folder and W&B group
    axis: str = "tokens"  # tokens | depth | batch | block: the law this point samples
    # The frozen target (conf group `target/`, like a recipe's): `target=<option>` or `target.name_or_path=...`
    # retargets training and eval of every point with one override.
    target: TargetConfig = field(default_factory=lambda: TargetConfig(name_or_path="???"))
    draft_name: str = "scylla"  # a draft algorithm (train/drafts/registry.py: a name or an alias)
    depth: int = 2  # draft.num_layers
    # draft.block_size (tokens drafted per forward, DFlash): the block axis. None = the draft's own default,
    # filled in by to_point_config so that a grid that leaves it unset and one that names the default share
    # their trainings; stays None for drafts without a block.
    block: int | None = None
    tokens: int = 100000  # train.max_tokens
    nproc: int = 2  # training ranks
    # Warmup as a fraction of the run's optimizer steps, so every budget's schedule has the same shape;
    # ignored when `train` sets optim.warmup_steps itself.
    warmup_fraction: float = 0.05
    train: list[str] = field(default_factory=list)  # more `python -m train` overrides
    eval: PointEvalConfig = field(default_factory=PointEvalConfig)
    tracking: str = "wandb"  # wandb | none: the W&B run of each point
    output_root: str = "outputs/sweeps/tiny"

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis={self.axis!r}: expected one of {AXES}")
        if self.block is not None and self.block < 2:
            raise ValueError(
                f"block={self.block}: a block is the last accepted token + >= 1 mask slot, so >= 2"
            )
        if min(self.depth, self.tokens, self.nproc, self.eval.batch_size) < 1:
            raise ValueError("depth, tokens, nproc and eval.batch_size must be >= 1")
        bad = [m for m in self.eval.modes if m not in ("chain", "tree")]
        if bad:
            raise ValueError(f"eval.modes: {bad} not in (chain, tree)")

    def train_overrides(self, tokens_per_step: int | None = None) -> list[str]:
        """What defines the trained draft; points that agree on these share one training run."""
        block = [] if self.block is None else [f"draft.block_size={self.block}"]
        out = [*target_overrides(self.target), f"draft={self.draft_name}", f"draft.num_layers={self.depth}",
               *block, f"train.max_tokens={self.tokens}", *self.train]  # fmt: skip
        if tokens_per_step and not any(o.startswith("optim.warmup_steps=") for o in self.train):
            steps = -(-self.tokens // tokens_per_step)
            out.append(f"optim.warmup_steps={max(1, round(self.warmup_fraction * steps))}")
        return out

    @property
    def train_key(self) -> str:
        digest = _digest([_portable(o) for o in self.train_overrides()])
        block = "" if self.block is None else f"-k{self.block}"
        return f"{self.draft_name}-d{self.depth}{block}-t{self.tokens}-{digest}"

    @property
    def eval_key(self) -> str:
        e = self.eval
        return _digest([_portable(o) for o in target_overrides(self.target)] + [e.batch_size, e.overrides])

    @property
    def point_id(self) -> str:
        """One row of the results table: the axis it samples, what was trained, how it was decoded."""
        return f"{self.axis}-{self.train_key}-b{self.eval.batch_size}-{_digest(asdict(self.eval))}"


def _portable(override: str) -> str:
    """An override with this clone's root left out (the shipped tiny target's folder), so that keys, and with
    them finished points, survive moving or copying the clone."""
    return override.replace(f"{REPO_ROOT}/", "")


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def to_point_config(cfg: DictConfig | dict) -> PointConfig:
    """Merge onto the schema (an unknown key fails, named) and build the dataclasses."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    data.pop("hydra", None)
    data.pop("grid", None)
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PointConfig), data))
    except OmegaConfBaseException as err:
        raise ValueError(f"sweep point config: {err}") from None
    assert isinstance(obj, PointConfig)
    return with_block(obj)


def draft_block_size(draft_name: str) -> int | None:
    """The draft's default `block_size` (its config class is the only home of it; an alias may change it),
    None when the algorithm drafts no block."""
    from train.drafts.registry import spec_for  # the registry imports every draft (torch): only when asked

    spec = spec_for(draft_name)
    defaults = {f.name: f.default for f in fields(spec.config)}
    if "block_size" not in defaults:
        return None
    return int(spec.aliases.get(draft_name, {}).get("block_size", defaults["block_size"]))


def with_block(cfg: PointConfig) -> PointConfig:
    """Fill `block` from the draft's default; refuse a block (or the block axis) for a draft without one."""
    default = draft_block_size(cfg.draft_name)
    if default is None:
        if cfg.block is not None or cfg.axis == "block":
            raise ValueError(
                f"sweep point: block={cfg.block} (axis={cfg.axis}) but draft {cfg.draft_name!r} has no "
                "draft.block_size; the block axis needs a block drafter (draft_name=dflash)"
            )
        return cfg
    return cfg if cfg.block is not None else replace(cfg, block=default)
