"""Experiment tracking: Weights & Biases on rank 0, a null logger everywhere else and for `logger=none`.

On the ground floor (`data`) because training and eval both log through it and eval may import only
`train.modeling` from training."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class LoggerConfig:
    """Where metrics go (conf group `logger/`)."""

    name: str = "wandb"  # wandb | none
    project: str = "draftforge"  # W&B project
    entity: str | None = None  # W&B team or user; None = the account's default
    run_name: str | None = None  # None = derived from the run directory name
    group: str | None = None  # groups the stages of one experiment together
    tags: list[str] = field(default_factory=list)
    mode: str = "offline"  # online | offline (sync later with `wandb sync`) | disabled
    dir: str | None = None  # where W&B writes; None = the run's output directory

    def __post_init__(self) -> None:
        if self.name not in ("wandb", "none"):
            raise ValueError(f"logger.name={self.name!r}: expected 'wandb' or 'none'")
        if self.mode not in WANDB_MODES:
            raise ValueError(f"logger.mode={self.mode!r}: expected one of {WANDB_MODES}")


class NullLogger:
    run_id: str | None = None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def log_image(self, key: str, path: str | Path) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger(NullLogger):
    def __init__(
        self, cfg: LoggerConfig, run_dir: str | Path, config: dict[str, Any], run_id: str | None = None
    ) -> None:
        import wandb

        wandb_dir = Path(cfg.dir or os.environ.get("WANDB_DIR") or run_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.run_name or Path(run_dir).name,
            group=cfg.group,
            tags=list(cfg.tags),
            mode=os.environ.get("WANDB_MODE", cfg.mode),
            dir=str(wandb_dir),
            config=config,
            # A resumed training run continues the same W&B run instead of starting a second one.
            id=run_id,
            resume="allow" if run_id else None,
        )
        self.run_id = self.run.id

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            self.run.summary[k] = v

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({key: self._wandb.Table(columns=columns, data=rows)})

    def log_image(self, key: str, path: str | Path) -> None:
        self.run.log({key: self._wandb.Image(str(path))})

    def finish(self) -> None:
        self.run.finish()


def make_logger(
    cfg: LoggerConfig, run_dir: str | Path, config: dict[str, Any], is_main: bool, run_id: str | None = None
) -> NullLogger:
    if cfg.name == "none" or cfg.mode == "disabled" or not is_main:
        return NullLogger()
    return WandbLogger(cfg, run_dir, config, run_id)
