"""Acceptance and speed metrics: counts and seconds are summed over prompts and batches first, then divided.

A mean of per-prompt ratios would weight a 3-token answer like a 64-token one; ratios of totals do not.

Definitions (the report prints them):
- tau: tokens emitted per target verification forward of a row, the bonus token counted (1 <= tau <=
  depth + 1). The prefill forward and the one token it produces are excluded.
- acceptance_at_i: P(a draft token at depth i is accepted | verification reached depth i), where depth i is
  reached when the path accepted so far ends at a node that has children there (chain: i-1 accepted).
- tokens/s: tokens after the first, over the time after the prefill, for the whole batch; prefill excluded
  from BOTH the speculative run and the baseline (the same engine decoding the target alone, one token per
  forward, same batch). speedup = spec tokens/s / baseline tokens/s.
- costs per step (one batched forward): draft_ms (all draft forwards of a step), verify_ms (the target
  forward on the tree), baseline_step_ms (a whole plain decoding step: one token per row, bookkeeping
  included), overhead_ms (the rest of a speculative step: verification walk, cache compaction).
- speedup_ceiling = tau / (1 + draft_ms / baseline_step_ms): what this tau and draft cost would give if
  verifying the tree cost one plain decoding step and bookkeeping were free (the analytic bound).
- speedup_cost_model = tau * baseline_step_ms / (draft_ms + verify_ms): with the measured verify cost,
  bookkeeping still free. measured speedup < cost model: engine overhead; cost model < ceiling: the
  verify forward on the tree costs more than a plain step (compute-bound hardware, e.g. a CPU).
- tau_ci95, speedup_ci95: 95 % percentile-bootstrap intervals (eval/intervals.py), seeded. tau's resamples
  prompts and recomputes the ratio of totals; speedup's resamples batches (its seconds are per batch; at
  batch size 1 a batch is a prompt) and recomputes both throughputs from the resample's totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from eval.engine import BatchStats, RowResult
from eval.intervals import ratio_ci, totals_ci

TAU_NOTE = "tau = tokens emitted per target verification forward, bonus token counted; prefill excluded"
SPEED_NOTE = (
    "tokens/s and speedup exclude the prefill from both spec and baseline (the same engine decoding the "
    "target alone, same batch size); speedup_ceiling assumes verifying costs one plain step and no overhead"
)
CI_NOTE = (
    "*_ci95: 95 % bootstrap interval (seeded): tau over prompts (ratio of resampled totals), speedup over "
    "batches"
)

Metrics = dict[str, float | int | list[float] | None]  # lists: [lo, hi] of a *_ci95


@dataclass
class Totals:
    """Additive counts over any set of prompts; every reported ratio is computed from these."""

    positions: int  # acceptance is reported for depths 1..positions
    prompts: int = 0
    row_steps: int = 0  # sum over rows of their verification forwards
    spec_tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    reached_at: list[int] = field(default_factory=list)
    accepted_at: list[int] = field(default_factory=list)
    base_tokens: int = 0
    timed: bool = True  # False once a batch mixed this scope with others: its seconds are not its own
    steps: int = 0  # batched verification forwards
    draft_time: float = 0.0
    verify_time: float = 0.0
    spec_time: float = 0.0
    base_steps: int = 0
    base_time: float = 0.0
    # Per prompt (spec tokens, verify forwards) and per batch (spec tokens, spec s, base tokens, base s): the
    # units the intervals resample. A batch's tokens are what add_row added since the previous add_batch.
    prompt_units: list[tuple[int, int]] = field(default_factory=list)
    batch_units: list[tuple[int, float, int, float]] = field(default_factory=list)
    _mark: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.reached_at = self.reached_at or [0] * self.positions
        self.accepted_at = self.accepted_at or [0] * self.positions

    def add_row(self, spec: RowResult, base: RowResult) -> None:
        self.prompts += 1
        self.row_steps += spec.steps
        self.spec_tokens += sum(spec.emitted)
        self.drafted += sum(spec.drafted)
        self.accepted += sum(spec.accepted)
        for n_ok, reached in zip(spec.accepted, spec.reached, strict=True):
            for i in range(min(reached, self.positions)):
                self.reached_at[i] += 1
            for i in range(min(n_ok, self.positions)):
                self.accepted_at[i] += 1
        self.base_tokens += max(len(base.tokens) - 1, 0)
        self.prompt_units.append((sum(spec.emitted), spec.steps))

    def add_batch(self, spec: BatchStats, base: BatchStats) -> None:
        """Call after add_row for each of the batch's rows (its token counts are taken from them)."""
        spec_tok, base_tok = self.spec_tokens - self._mark[0], self.base_tokens - self._mark[1]
        self._mark = (self.spec_tokens, self.base_tokens)
        self.batch_units.append((spec_tok, spec.decode_time, base_tok, base.decode_time))
        self.steps += spec.steps
        self.draft_time += spec.draft_time
        self.verify_time += spec.verify_time
        self.spec_time += spec.decode_time
        self.base_steps += base.steps
        self.base_time += base.decode_time

    def metrics(self) -> Metrics:
        """Every ratio is None where its denominator is zero (e.g. max_new_tokens=1: nothing decoded)."""

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        tau = ratio(self.spec_tokens, self.row_steps)
        units = np.array(self.prompt_units, dtype=float).reshape(-1, 2)
        tau_ci = ratio_ci(units[:, 0], units[:, 1]) if tau is not None else None
        out: Metrics = {
            "tau": tau,
            "tau_ci95": _listed(tau_ci),
            "acceptance_rate": ratio(self.accepted, self.drafted),
        }
        for i in range(self.positions):
            out[f"acceptance_at_{i + 1}"] = ratio(self.accepted_at[i], self.reached_at[i])
        t = self.timed
        spec_tps = ratio(self.spec_tokens, self.spec_time) if t else None
        base_tps = ratio(self.base_tokens, self.base_time) if t else None
        draft_ms = ratio(1e3 * self.draft_time, self.steps) if t else None
        verify_ms = ratio(1e3 * self.verify_time, self.steps) if t else None
        base_ms = ratio(1e3 * self.base_time, self.base_steps) if t else None
        ceiling = tau / (1 + draft_ms / base_ms) if tau and draft_ms is not None and base_ms else None
        model = (
            ratio(tau * base_ms, draft_ms + verify_ms) if tau and base_ms and draft_ms is not None else None
        )
        out.update(
            {
                "spec_tokens_per_s": spec_tps,
                "baseline_tokens_per_s": base_tps,
                "speedup": ratio(spec_tps, base_tps),
                "speedup_ci95": _listed(self.speedup_ci()) if t and ratio(spec_tps, base_tps) else None,
                "speedup_cost_model": model,
                "speedup_ceiling": ceiling,
                "draft_ms": draft_ms,
                "verify_ms": verify_ms,
                "baseline_step_ms": base_ms,
                "overhead_ms": ratio(1e3 * (self.spec_time - self.draft_time - self.verify_time), self.steps)
                if t
                else None,
                "prompts": self.prompts,
                "verify_forwards": self.row_steps,
                "spec_tokens": self.spec_tokens,
                "baseline_tokens": self.base_tokens,
                "drafted": self.drafted,
                "accepted": self.accepted,
            }
        )
        return out

    def speedup_ci(self) -> tuple[float, float] | None:
        """(spec tokens / spec s) / (base tokens / base s), each from a resample of batches' totals."""
        return totals_ci(
            np.array(self.batch_units, dtype=float).reshape(-1, 4),
            lambda s: (s[:, 0] / s[:, 1]) / (s[:, 2] / s[:, 3]),
        )


def _listed(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


def summarize(
    batches: Iterable[tuple[list[str], list[RowResult], list[RowResult], BatchStats, BatchStats]],
    positions: int,
) -> dict[str, Metrics]:
    """Per batch: (category of each row, spec rows, baseline rows, spec stats, baseline stats) ->
    {"all": metrics, "<category>": metrics, ...}. A category's speed numbers come only from batches that
    held nothing else; where a batch mixed categories, that category's speed numbers are None."""
    totals: dict[str, Totals] = {"all": Totals(positions)}
    for cats, spec_rows, base_rows, spec_stats, base_stats in batches:
        for cat, s, b in zip(cats, spec_rows, base_rows, strict=True):
            totals["all"].add_row(s, b)
            totals.setdefault(cat, Totals(positions)).add_row(s, b)
        totals["all"].add_batch(spec_stats, base_stats)
        kinds = set(cats)
        for cat in kinds:
            if len(kinds) == 1:
                totals[cat].add_batch(spec_stats, base_stats)
            else:
                totals[cat].timed = False
    return {scope: t.metrics() for scope, t in totals.items()}
