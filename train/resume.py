"""Where a run continues from: leftovers cleaned, the newest whole checkpoint found, drift refused, state loaded.

A checkpoint saved by the same number of ranks in the same engine layout loads exactly (bit-identical
continuation). Saved by another number of ranks or another ZeRO stage, it is resharded (train/reshard.py) and
the run says in one line what changed and what it did; the data order continues at the same step, which is
the planned order whenever the global batch is kept (data/packing.py: BlockSampler).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from train import distributed as dist
from train.checkpoint import (
    TrainState,
    clean_leftovers,
    latest_checkpoint,
    load_checkpoint,
    read_manifest,
    read_train_state,
)
from train.config import TrainConfig
from train.engine import Engine
from train.guards import batch_factors, global_batch, resume_problems
from train.reshard import ReshardError, reshard_load, running_layout, saved_layout


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


def _way_out(saved: dict[str, str], cfg: TrainConfig) -> str:
    """How to resume anyway: keep the checkpoint's global batch when the factors allow it."""
    if "batch_size" not in saved:
        return ""
    old, per_accum = global_batch(saved["batch_size"]), cfg.train.micro_batch_size * dist.world_size()
    if old % per_accum == 0:
        return f"; to keep the global batch of {old}: train.global_batch_size={old} (or train.grad_accum={old // per_accum})"
    return ""


def _describe(layout: str) -> str:
    return "plain torch" if layout == "torch" else f"ZeRO-{layout[-1]}"


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
    saved = manifest.get("identity", {})
    problems = resume_problems(saved, identity, cfg.resume_allow_changes)
    if problems:
        raise ResumeRefused(
            f"refusing to resume from {folder}: "
            + "; ".join(problems)
            + ". Pass resume_allow_changes=[<names>] to accept, or start a new run_name"
            + (_way_out(saved, cfg) if any(p.startswith("batch_size") for p in problems) else "")
        )
    old_cfg = manifest.get("fingerprint", {}).get("config_fingerprint")
    if old_cfg and old_cfg != fingerprint.get("config_fingerprint"):
        dist.print0(f"[resume] note: config fingerprint {old_cfg} -> {fingerprint['config_fingerprint']}")
    saved_world, world = int(manifest["world_size"]), dist.world_size()
    old_layout, new_layout = saved_layout(folder), running_layout(engine)
    if (saved_world, old_layout) == (world, new_layout):
        state = load_checkpoint(engine, folder)
    else:
        state = read_train_state(folder)
        if dist.rank() >= saved_world:  # a new rank: its own noise stream, distinct from every other rank's
            torch.manual_seed(cfg.train.seed * 1000 + dist.rank() + 7919 * state.step)
        try:
            seconds = reshard_load(engine, folder, saved_world, state.step, state.skipped_steps)
        except ReshardError as err:
            raise ResumeRefused(
                f"cannot reshard {folder}: {err}; resume it as saved: {saved_world} rank(s), "
                f"{_describe(old_layout)}"
            ) from None
        dist.print0(
            _changed_line(saved, identity, saved_world, world, old_layout, new_layout, seconds, state.step)
        )
    state.micro_index = state.step * cfg.train.grad_accum  # the data position: step s of the (global) order
    return state, folder


def _changed_line(
    saved: dict[str, str],
    identity: dict[str, str],
    old_world: int,
    world: int,
    old_layout: str,
    new_layout: str,
    seconds: float,
    step: int,
) -> str:
    """The one line a resharded resume prints: what changed, what was done about it."""
    what = f"{old_world} -> {world} rank(s), {_describe(old_layout)} -> {_describe(new_layout)}"
    old_b, new_b = saved.get("batch_size"), identity["batch_size"]
    if old_b is None:
        batch = "global batch not recorded in the checkpoint"
    elif global_batch(old_b) == global_batch(new_b):
        m0, a0, w0 = batch_factors(old_b)
        m1, a1, w1 = batch_factors(new_b)
        batch = (
            f"global batch {global_batch(new_b)} kept ({m0} x {a0} x {w0} -> {m1} x {a1} x {w1} micro x accum"
            " x ranks), same sample order"
        )
    else:
        batch = (
            f"global batch {global_batch(old_b)} -> {global_batch(new_b)} (allowed): the new batch's sample"
            " order from this step on"
        )
    return (
        f"[resume] {what}: model, optimizer and schedule resharded from {old_world} shard(s) in {seconds:.2f} s;"
        f" {batch}; continuing at step {step}"
    )
