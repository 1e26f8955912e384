"""The typed, strict run configuration. Hydra composes YAML onto this schema; `to_typed` converts it once,
at the entry.

Below `__main__` nobody sees a DictConfig. Unknown keys and ill-typed values fail here, before any work,
with a message naming the key. The defaults live in the dataclasses only: `conf/train.yaml` names the group
defaults, and Hydra composes it onto `TrainConfig`'s defaults (registered below as `train_schema`), so a
key the schema lacks is refused at the command line too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from data.spec import DataConfig
from data.target_io import check_target_path, check_tokenizer_path
from data.tracking import LoggerConfig
from data.typed import ConfigError
from data.typed import to_typed as typed_config
from train.drafts.registry import DEFAULT_DRAFT, SPECS
from train.losses import DIVERGENCES
from train.modeling.target import TargetConfig
from train.settings import DeepSpeedConfig, LoopConfig, OptimConfig, StageConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "DeepSpeedConfig",
    "LoopConfig",
    "OptimConfig",
    "StageConfig",
    "TrainConfig",
    "check_paths",
    "to_typed",
]


@dataclass
class TrainConfig:
    target: TargetConfig = field(default_factory=TargetConfig)
    # The chosen algorithm's own config dataclass (train/drafts/<name>/config.py), picked by draft.name in
    # `to_typed`; Hydra's draft/<name> options are registered from those classes (train/drafts/registry.py).
    draft: Any = field(default_factory=lambda: {"name": DEFAULT_DRAFT})
    stage: StageConfig = field(default_factory=StageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    run_name: str = "run"  # names the output directory outputs/<run_name>; same on every rank
    output_dir: str = "outputs/run"  # checkpoints, export, resolved config, metrics
    resume: bool = False  # continue from the newest whole checkpoint (implied on a SLURM requeue)
    # What a resumed run may change from its checkpoint; anything else differing is refused by name. Any of:
    # tokenizer, target, draft_vocab, world_size, batch_size.
    resume_allow_changes: list[str] = field(default_factory=list)


# The schema's defaults as plain data: Hydra then knows every key (an override of a key it lacks needs `+`)
# while the types are checked once, by `to_typed`, which names the key.
ConfigStore.instance().store(
    name="train_schema", node=OmegaConf.to_container(OmegaConf.structured(TrainConfig))
)


def to_typed(cfg: DictConfig | dict) -> TrainConfig:
    """Merge onto the schema (strict: unknown key = error), resolve interpolations, build dataclasses."""
    typed = typed_config(TrainConfig, cfg)
    typed = replace(typed, draft=_typed_draft(typed.draft))
    _check(typed)
    return typed


def _typed_draft(draft: Any) -> Any:
    """The draft section, typed by its algorithm's config class: a key that class lacks is refused by name."""
    draft = dict(draft) if isinstance(draft, dict) else {"name": draft}
    name = draft.get("name", DEFAULT_DRAFT)
    if name not in SPECS:
        raise ConfigError(f"draft.name={name!r}: expected one of {sorted(SPECS)}")
    spec = SPECS[name]
    # An alias (scylla) starts from its own values, then what the run sets.
    merged = {**vars(spec.default_config(name)), **draft}
    try:
        return typed_config(spec.config, merged, what=f"draft={name}")
    except ConfigError as err:
        raise ConfigError(f"{err} (draft={name} reads: {', '.join(sorted(vars(spec.config())))})") from None


def _check(cfg: TrainConfig) -> None:
    if cfg.stage.divergence not in DIVERGENCES:
        raise ConfigError(f"stage.divergence={cfg.stage.divergence!r}: expected one of {DIVERGENCES}")
    if cfg.stage.temperature <= 0:
        raise ConfigError(f"stage.temperature={cfg.stage.temperature}: must be > 0")
    for key, value in (
        ("train.micro_batch_size", cfg.train.micro_batch_size),
        ("train.grad_accum", cfg.train.grad_accum),
        ("train.max_steps", cfg.train.max_steps),
        ("data.seq_len", cfg.data.seq_len),
    ):
        if value < 1:
            raise ConfigError(f"{key}={value}: must be >= 1")
    gbs = cfg.train.global_batch_size
    if gbs is not None and gbs < 1:
        raise ConfigError(f"train.global_batch_size={gbs}: must be >= 1")
    if gbs is not None and cfg.train.grad_accum != 1:
        raise ConfigError(
            f"train.global_batch_size={gbs} and train.grad_accum={cfg.train.grad_accum}: one number, two homes;"
            " set only global_batch_size (accumulation is derived from it)"
        )
    if not cfg.data.train_files and not cfg.data.hf_dataset:
        raise ConfigError("no training data: set data.train_files or data.hf_dataset")


def with_world(cfg: TrainConfig, world: int) -> TrainConfig:
    """`cfg` with grad_accum derived from train.global_batch_size on `world` ranks (unchanged when unset)."""
    gbs, mbs = cfg.train.global_batch_size, cfg.train.micro_batch_size
    if gbs is None:
        return cfg
    if gbs % (mbs * world):
        fits = [n for n in range(1, gbs + 1) if gbs % (mbs * n) == 0]
        raise ConfigError(
            f"train.global_batch_size={gbs} is not a multiple of train.micro_batch_size={mbs} x {world} ranks;"
            f" choose a micro-batch that divides it, or run on {fits or 'another number of'} ranks"
        )
    return replace(cfg, train=replace(cfg.train, grad_accum=gbs // (mbs * world)))


def check_paths(cfg: TrainConfig) -> None:
    """Missing files fail here, before a process group, a model load or a tokenizer pass."""
    check_target_path(cfg.target.name_or_path)
    if cfg.target.tokenizer:
        check_tokenizer_path(cfg.target.tokenizer)
    for key, files in (
        ("data.train_files", cfg.data.train_files),
        ("data.valid_files", cfg.data.valid_files),
    ):
        for f in files:
            if not Path(f).exists():  # a file, or a folder of text files
                raise FileNotFoundError(f"{key}: {f}: no such file or folder")
    if cfg.stage.init_from and not (Path(cfg.stage.init_from) / "config.json").is_file():
        raise FileNotFoundError(f"stage.init_from={cfg.stage.init_from}: not a draft export (no config.json)")
