"""Where a real training step's time goes: wall-clock brackets around the trainer's own calls.

Used by tests/bench/bench_train_breakdown.py on each rank of a `torch.distributed.run` job. The trainer's loop
(`Trainer.fit`) runs unchanged; its collaborators' methods are wrapped on the instances (the real methods run
inside), each wrapper charging its wall time to one phase:

    data            seam.train_batch (rows, collation, trimming) + what forward_loss does outside the two calls
                    below (host->device, the packing layout)
    target_forward  seam.data.features (online: the target's forward; offline: its LM head on cached states)
    draft_forward   seam.objective (the draft's forward, its LM head and the loss terms and stats)
    draft_backward  engine.backward (autograd; with ZeRO-2 the gradient bucketing hooks run inside it)
    optimizer       engine.step (clipping, AdamW, DeepSpeed's partition copies)
    comm            every torch.distributed collective, wherever it is called (DeepSpeed's gradient reduction
                    inside backward/step, the parameter all-gather after the step, the trainer's own flags)

Why the sum is honest: phases nest (comm inside backward, target_forward inside forward_loss) and each
wrapper charges only its *exclusive* time, its wall time minus that of the phases opened inside it, so no
interval is counted twice. Every interval between two phases (the loop's own Python, `bool(bad)`, logging) is
"other" = window - sum(phases). The window spans whole steps: it opens at the train_batch call of step
`warmup` (after a barrier, so both ranks start together) and closes at the train_batch call of step
`warmup + steps`. On CPU every op (gloo collectives included: DeepSpeed's ZeRO-2 path calls them with
async_op=False, and an async call is counted and reported) has finished when it returns, so the brackets
need no sync; on CUDA each bracket synchronises the device first (which slows the step a little but makes
each kernel land in the phase that launched it). A collective's time includes waiting for the slower rank:
that wait is what 2 ranks cost, and it is reported as comm, never hidden in a barrier.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as tdist

PHASES = ("data", "target_forward", "draft_forward", "draft_backward", "optimizer", "comm", "wait")
MODEL_PHASES = ("target_forward", "draft_forward", "draft_backward", "optimizer")
COLLECTIVES = (
    "all_reduce",
    "all_reduce_coalesced",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "_reduce_scatter_base",
    "all_gather",
    "all_gather_into_tensor",
    "_all_gather_base",
    "broadcast",
)


class PhaseClock:
    """Exclusive wall time per phase inside a window of whole training steps."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self.async_collectives = 0
        self.comm_by_name: dict[str, float] = {}  # exclusive comm seconds per collective
        self.barrier: Callable[[], None] | None = (
            None  # set: a barrier before each collective, timed as "wait"
        )
        self.stack: list[list[float]] = []  # [start, time of phases opened inside]
        self.recording = False
        self.window_start = self.window_end = 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def timed(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.recording:
                return fn(*args, **kwargs)
            if phase == "comm":
                if kwargs.get("async_op"):
                    self.async_collectives += 1  # only its launch is timed here: reported, never silent
                if self.barrier is not None:
                    self._wait()
            frame = [self._now(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self._now() - frame[0]
                self.stack.pop()
                self.totals[phase] += elapsed - frame[1]
                self.calls[phase] += 1
                if phase == "comm":
                    name = fn.__name__
                    self.comm_by_name[name] = self.comm_by_name.get(name, 0.0) + elapsed - frame[1]
                if self.stack:
                    self.stack[-1][1] += elapsed

        return wrapper

    def _wait(self) -> None:
        """The skew between ranks, split off a collective: a barrier first, its time charged to "wait" (the
        barrier's own latency lands there too, so this mode slows the step by about one barrier per
        collective; the collective after it then times the transfer alone)."""
        assert self.barrier is not None
        t = self._now()
        self.barrier()
        elapsed = self._now() - t
        self.totals["wait"] += elapsed
        if self.stack:
            self.stack[-1][1] += elapsed

    def open_window(self) -> None:
        assert not self.stack, "the window must open between phases"
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self.comm_by_name = {}
        self.recording = True
        self.window_start = self._now()

    def close_window(self) -> None:
        assert not self.stack, "the window must close between phases"
        self.window_end = self._now()
        self.recording = False


def time_collectives(clock: PhaseClock) -> Callable[[], None]:
    """Wrap torch.distributed's collectives; must run before deepspeed.initialize, which keeps references to
    some of them. Returns the original barrier (the window's own barrier is not a phase)."""
    barrier = tdist.barrier
    for name in COLLECTIVES:
        if hasattr(tdist, name):
            setattr(tdist, name, clock.timed(getattr(tdist, name), "comm"))
    return barrier


def instrument(trainer: Any, clock: PhaseClock, warmup: int, steps: int, barrier: Callable[[], None]) -> None:
    """Wrap the trainer's collaborators (see the module docstring); the window follows train_batch calls
    (grad_accum must be 1, so that one call is one step)."""
    seam, engine = trainer.seam, trainer.engine
    assert trainer.cfg.train.grad_accum == 1, "the breakdown counts one micro-batch per step"
    seam.data.features = clock.timed(seam.data.features, "target_forward")
    seam.objective = clock.timed(seam.objective, "draft_forward")
    seam.forward_loss = clock.timed(seam.forward_loss, "data")
    engine.backward = clock.timed(engine.backward, "draft_backward")
    engine.step = clock.timed(engine.step, "optimizer")
    train_batch = clock.timed(seam.train_batch, "data")
    calls = [0]

    def batch_at_step_edges(index: int) -> dict[str, torch.Tensor]:
        if calls[0] == warmup:
            barrier()
            clock.open_window()
        elif calls[0] == warmup + steps:
            clock.close_window()
        calls[0] += 1
        return train_batch(index)

    seam.train_batch = batch_at_step_edges


def summary(clock: PhaseClock, steps: int, tokens_per_step: int) -> dict[str, Any]:
    """ms per step for each phase, "other" and the step, on this rank."""
    step = (clock.window_end - clock.window_start) / steps
    ms = {k: v / steps * 1e3 for k, v in clock.totals.items()}
    ms["other"] = step * 1e3 - sum(ms.values())
    return {
        "ms": ms,
        "step_ms": step * 1e3,
        "tokens_per_s": tokens_per_step / step,
        "calls_per_step": {k: v / steps for k, v in clock.calls.items()},
        "async_collectives": clock.async_collectives,
        "comm_ms_by_name": {k: v / steps * 1e3 for k, v in clock.comm_by_name.items()},
    }
