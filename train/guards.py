"""Guards that keep a run from training on from a broken state.

- Non-finite steps: the trainer ORs "this rank saw a non-finite loss" across ranks before the optimizer step
  and every rank skips that step (`Engine.step(skip=True)`); a non-finite gradient norm is skipped too (plain
  torch, and ZeRO 1-3 whose own check is all-reduced; ZeRO-0 with a finite loss is not covered).
  `SkipCounter` stops the run after `train.max_consecutive_skips` in a row.
- Drift on resume: `resume_problems` compares what a checkpoint was made with (tokenizer, target, draft
  vocabulary, global batch) with the current run and names every difference. The global batch is compared
  as a number of sequences per step: 8 x 1 x 2 ranks and 8 x 2 x 1 rank are the same batch. A changed world
  size alone is not a problem: resume reshards the state (train/reshard.py) and says so.
- Hangs: `Watchdog` (faulthandler, a C-level timer thread, so it fires even when the main thread is stuck
  inside a collective) dumps every thread's stack and exits 1 when a rank finishes no step or save in time.
- Test-only fault injection: the loop calls `LoopHooks`, which do nothing; `loop_hooks()` installs
  `FaultInjection` instead when DRAFTFORGE_TEST_FAULTS (JSON) is set, e.g.
  `{"nan_loss": {"rank": 1, "steps": [3, 6]}, "save_error": {"rank": 1, "step": 4}}`; also `save_sleep`
  ({"rank", "step", "seconds"}), `step_sleep` (seconds) and `record_rows` (a path prefix: the blocks each
  micro-batch read, per rank). It exists so the tests can prove each guard
  works on real 2-rank runs.
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from data.fingerprint import same_target_identity, target_identity

RESUME_KEYS = ("tokenizer", "target", "draft_vocab", "batch_size")
# Accepted in resume_allow_changes for old command lines; a world-size change needs no permission any more.
ALLOWED_NAMES = (*RESUME_KEYS, "world_size")


def resume_identity(
    fingerprint: dict, draft_vocab: int | None, world: int, micro_batch: int, grad_accum: int
) -> dict[str, str]:
    """What must not change silently between a checkpoint and the run resuming from it."""
    return {
        "tokenizer": str(fingerprint.get("tokenizer_fingerprint")),
        "target": target_identity(fingerprint),
        "draft_vocab": str(draft_vocab),
        "world_size": str(world),
        "batch_size": f"{micro_batch * grad_accum * world} sequences/step "
        f"(micro {micro_batch} x accum {grad_accum} x world {world})",
    }


def global_batch(batch_size: str) -> int:
    """Sequences per optimizer step from an identity's batch_size entry ('16 sequences/step (...)')."""
    return int(batch_size.split()[0])


def batch_factors(batch_size: str) -> tuple[int, int, int]:
    """(micro, accum, world) from an identity's batch_size entry."""
    m = re.search(r"micro (\d+) x accum (\d+) x world (\d+)", batch_size)
    if m is None:
        raise ValueError(f"unreadable batch_size record {batch_size!r}")
    micro, accum, world = (int(g) for g in m.groups())
    return micro, accum, world


def _same(key: str, old: str, new: str | None) -> bool:
    if key == "batch_size" and new is not None:
        return global_batch(old) == global_batch(new)  # the factors may differ: the batch is the same
    if key == "target":  # a target is known by its weights: the same weights at another path resume
        return same_target_identity(old, new or "")
    return old == new


def resume_problems(saved: dict[str, str], current: dict[str, str], allowed: list[str]) -> list[str]:
    """Each refused difference as 'key: checkpoint <old>, now <new>'."""
    unknown = sorted(set(allowed) - set(ALLOWED_NAMES))
    if unknown:
        raise ValueError(f"resume_allow_changes={unknown}: expected names among {list(RESUME_KEYS)}")
    return [
        f"{key}: checkpoint {saved[key]}, now {current[key]}"
        for key in RESUME_KEYS
        if key in saved and key not in allowed and not _same(key, saved[key], current.get(key))
    ]


@dataclass
class SkipCounter:
    """Counts skipped (non-finite) steps; `limit` in a row means the run cannot recover by itself."""

    limit: int
    total: int = 0
    in_a_row: int = 0

    def record(self, skipped: bool) -> bool:
        """Returns True when the run must stop."""
        if not skipped:
            self.in_a_row = 0
            return False
        self.total += 1
        self.in_a_row += 1
        return self.limit > 0 and self.in_a_row >= self.limit


class Watchdog:
    """Re-armed after every step and save; if it is not re-armed within `seconds`, the process exits 1."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def arm(self, seconds: int | None = None) -> None:
        if self.seconds > 0:
            faulthandler.dump_traceback_later(seconds or self.seconds, exit=True, file=sys.stderr)

    def disarm(self) -> None:
        if self.seconds > 0:
            faulthandler.cancel_dump_traceback_later()


class LoopHooks:
    """The points where a test may act on a running loop. The loop calls them unconditionally; this base
    class does nothing, so a real run has no test branch in its hot path."""

    def loss(self, loss: torch.Tensor, rank: int, step: int) -> torch.Tensor:
        """The micro-batch loss about to be backpropagated (`step` counts from 1)."""
        return loss

    def after_step(self) -> None:
        """After every optimizer step."""

    def micro_batch(self, rank: int, step: int, rows: Callable[[], Sequence[int]]) -> None:
        """Before a micro-batch of optimizer step `step` (from 1); `rows()` gives the blocks it reads."""

    def during_save(self, rank: int, step: int) -> None:
        """After this rank wrote its checkpoint files, before the manifest."""


@dataclass
class FaultInjection(LoopHooks):
    """Test-only faults (see the module docstring), installed only when DRAFTFORGE_TEST_FAULTS is set."""

    spec: dict = field(default_factory=dict)

    def loss(self, loss: torch.Tensor, rank: int, step: int) -> torch.Tensor:
        f = self.spec.get("nan_loss")
        return loss * float("nan") if f and f["rank"] == rank and step in f["steps"] else loss

    def during_save(self, rank: int, step: int) -> None:
        """`save_sleep` holds the save open (so a test can kill it mid-save), `save_error` raises there."""
        f = self.spec.get("save_sleep")
        if f and f["rank"] == rank and f["step"] == step:
            time.sleep(f["seconds"])
        f = self.spec.get("save_error")
        if f and f["rank"] == rank and f["step"] == step:
            raise RuntimeError(
                f"injected save failure on rank {rank} at step {step} (DRAFTFORGE_TEST_FAULTS)"
            )

    def micro_batch(self, rank: int, step: int, rows: Callable[[], Sequence[int]]) -> None:
        """`record_rows` (a path prefix): one JSON line per micro-batch in <prefix>-rank<r>.jsonl, so a test can
        compare the blocks every step read with the planned order."""
        prefix = self.spec.get("record_rows")
        if prefix:
            with open(f"{prefix}-rank{rank}.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "rows": [int(r) for r in rows()]}) + "\n")

    def after_step(self) -> None:
        """`step_sleep` seconds after every step: slows a run so a test can signal it mid-way (no effect on
        the numbers)."""
        if self.spec.get("step_sleep"):
            time.sleep(float(self.spec["step_sleep"]))


def loop_hooks() -> LoopHooks:
    """Fault injection when a test set DRAFTFORGE_TEST_FAULTS, else hooks that do nothing."""
    raw = os.environ.get("DRAFTFORGE_TEST_FAULTS")
    return FaultInjection(json.loads(raw)) if raw else LoopHooks()
