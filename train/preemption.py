"""Stopping cleanly when the cluster asks, and the exit codes a training process ends with.

SIGUSR1, SIGUSR2 or SIGTERM on any rank only sets a flag (the handler does no I/O beyond one line on
stderr). At the next optimizer-step boundary the ranks agree on the flag in the same tiny all_reduce that
agrees on non-finite losses, so every rank stops after the same step: all save one checkpoint, rank 0
asks SLURM to requeue the job once (`scontrol requeue $SLURM_JOB_ID`, when `train.requeue` and the job's
SLURM_RESTART_COUNT < `train.max_requeues`), and every rank exits with EXIT_PREEMPTED. Further signals while
that happens are logged and ignored, so a second warning cannot tear the save.

Which signals: SLURM's `--signal=[B:]USR1@120` (our sbatch template), submitit's USR2 (Hydra's submitit
launcher), SIGTERM (scancel, preemption, and torchrun forwarding its own SIGTERM to the workers).

Exit codes of `python -m train` (every rank; torchrun reports a worker's code and itself exits 1):

    0   finished: max_steps reached, final checkpoint and export written
    1   an error on this rank (traceback printed), or the watchdog fired (stacks printed); the other ranks
        follow within `train.collective_timeout_s` at most (gloo fails at once when a peer's socket closes)
    2   bad configuration, caught before any work
    75  stopped on a signal after saving a checkpoint (EX_TEMPFAIL: run the same command with resume=true,
        or nothing under SLURM, which requeues the job)
    76  stopped after `train.max_consecutive_skips` non-finite steps in a row; the last good checkpoint is kept
    78  resume refused: the checkpoint was made with a different tokenizer, target, draft vocabulary, world
        size or batch size (listed by name, old and new); allow with resume_allow_changes=[...]
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType

from train import distributed as dist

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PREEMPTED = 75
EXIT_NONFINITE = 76
EXIT_RESUME_REFUSED = 78

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class StopRun(Exception):
    """Raised inside the loop to end the run with a documented exit code after a clean shutdown."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class StopSignals:
    """Turns stop signals into a flag read at step boundaries. Install in the main thread."""

    def __init__(self) -> None:
        self.received: str | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            msg = f"[preempt] rank {dist.rank()} got {name}: saving at the next step boundary, then exiting\n"
        else:
            msg = f"[preempt] rank {dist.rank()} got {name} again: already stopping, ignored\n"
        # os.write, not print: a handler that prints while the main thread prints raises a reentrancy error.
        os.write(2, msg.encode())


def request_requeue(enabled: bool, max_requeues: int) -> str:
    """Rank 0 asks SLURM to put this job back in the queue (once: ranks call this after agreeing to stop).
    Returns what happened, for the log."""
    job = dist.slurm_job_id()
    if not job:
        return "not under SLURM: no requeue (rerun with resume=true)"
    if not enabled:
        return "train.requeue=false: no requeue"
    restarts = dist.slurm_restart_count()
    if restarts >= max_requeues:
        return f"SLURM_RESTART_COUNT={restarts} reached train.max_requeues={max_requeues}: no requeue"
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return f"scontrol requeue {job} failed ({proc.returncode}): {proc.stderr.strip()}"
    return f"requeued SLURM job {job} (restart {restarts + 1})"
