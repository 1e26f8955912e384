"""Where a run continues from: leftovers cleaned, the newest whole checkpoint found, drift refused, state loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train import distributed as dist
from train.checkpoint import TrainState, clean_leftovers, latest_checkpoint, load_checkpoint, read_manifest
from train.config import TrainConfig
from train.engine import Engine
from train.guards import resume_problems


class ResumeRefused(ValueError):
    """The checkpoint was made under conditions this run would silently change."""


def draft_vocab(head_config: Any) -> int | None:
    """Rows of the draft's LM head: a reduced vocabulary when the head has one, else the target's."""
    return getattr(head_config, "draft_vocab_size", None) or getattr(head_config, "vocab_size", None)


def implied_resume(cfg: TrainConfig) -> bool:
    """A job SLURM requeued must continue its checkpoint, even when its command line lacks resume=true."""
    if not cfg.resume and dist.slurm_restart_count() > 0:
        dist.print0(
            f"[resume] SLURM_RESTART_COUNT={dist.slurm_restart_count()}: resuming (resume=true implied)"
        )
        return True
    return cfg.resume


def resume(
    cfg: TrainConfig, engine: Engine, run_dir: Path, identity: dict[str, str], fingerprint: dict
) -> tuple[TrainState | None, Path | None]:
    """Every rank calls this. Returns (state, folder), or (None, None) when there is nothing to resume."""
    for p in clean_leftovers(run_dir):
        dist.print0(f"[checkpoint] removed {p}: leftover of an interrupted save")
    if not cfg.resume:
        return None, None
    folder = latest_checkpoint(run_dir)
    if folder is None:
        dist.print0(f"[resume] no whole checkpoint under {run_dir}/checkpoints: starting from step 0")
        return None, None
    manifest = read_manifest(folder)
    problems = resume_problems(manifest.get("identity", {}), identity, cfg.resume_allow_changes)
    if problems:
        raise ResumeRefused(
            f"refusing to resume from {folder}: "
            + "; ".join(problems)
            + ". Pass resume_allow_changes=[<names>] to accept, or start a new run_name."
        )
    old_cfg = manifest.get("fingerprint", {}).get("config_fingerprint")
    if old_cfg and old_cfg != fingerprint.get("config_fingerprint"):
        dist.print0(f"[resume] note: config fingerprint {old_cfg} -> {fingerprint['config_fingerprint']}")
    return load_checkpoint(engine, folder), folder
