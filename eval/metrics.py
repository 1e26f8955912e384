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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from eval.engine import BatchStats, RowResult

TAU_NOTE = "tau = tokens emitted per target verification forward, bonus token counted; prefill excluded"
SPEED_NOTE = (
    "tokens/s and speedup exclude the prefill from both spec and baseline (the same engine decoding the "
    "target alone, same batch size); speedup_ceiling assumes verifying costs one plain step and no overhead"
)

Metrics = dict[str, float | int | None]


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

    def add_batch(self, spec: BatchStats, base: BatchStats) -> None:
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
        out: Metrics = {"tau": tau, "acceptance_rate": ratio(self.accepted, self.drafted)}
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


def summarize(
    batches: Iterable[tuple[list[str], list[RowResult], list[RowResult], BatchStats, BatchStats]],
    positions: int,
) -> dict[str, Metrics]:
    """Per batch: (category of each row, spec rows, baseline rows, spec stats, baseline stats) ->
    {"all": metrics, "<category>": metrics, ...}. A category's speed numbers come only from batches that
    held nothing else; where a batch mixed categories, that category's speed numbers are None."""
    totals: dict[str, Totals] = {"all": Totals(positions)}
    for cats, spec_rows, base_rows, spec_stats, base_stats in batches:
        totals["all"].add_batch(spec_stats, base_stats)
        for cat, s, b in zip(cats, spec_rows, base_rows, strict=True):
            totals["all"].add_row(s, b)
            totals.setdefault(cat, Totals(positions)).add_row(s, b)
        kinds = set(cats)
        for cat in kinds:
            if len(kinds) == 1:
                totals[cat].add_batch(spec_stats, base_stats)
            else:
                totals[cat].timed = False
    return {scope: t.metrics() for scope, t in totals.items()}
