"""Acceptance and speed metrics: counts and seconds are summed over prompts first, then divided.

A mean of per-prompt ratios would weight a 3-token answer like a 64-token one; ratios of totals do not.

Definitions (the report prints them):
- tau: tokens emitted per target verification forward, the bonus token counted (so 1 <= tau <= k+1).
  The prefill forward and the one token it produces are excluded.
- acceptance_at_i: P(draft token i accepted | verification reached position i).
- tokens/s: tokens after the first, over the time after the prefill; prefill excluded from BOTH the
  speculative run and the greedy baseline. speedup = spec tokens/s / baseline tokens/s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from eval.spec_decode import Decoded

TAU_NOTE = "tau = tokens emitted per target verification forward, bonus token counted; prefill excluded"
SPEED_NOTE = "tokens/s and speedup exclude the prefill forward (and its token) from both spec and greedy"


@dataclass
class Totals:
    """Additive counts over any set of prompts; every reported ratio is computed from these."""

    draft_length: int
    prompts: int = 0
    verify_forwards: int = 0
    spec_tokens: int = 0  # tokens emitted by verification forwards
    drafted: int = 0
    accepted: int = 0
    reached: list[int] = field(default_factory=list)  # per draft position: verifications that got there
    accepted_at: list[int] = field(default_factory=list)  # per draft position: accepted there
    draft_forwards: int = 0
    draft_time: float = 0.0
    verify_time: float = 0.0
    spec_time: float = 0.0
    base_tokens: int = 0
    base_time: float = 0.0

    def __post_init__(self) -> None:
        self.reached = self.reached or [0] * self.draft_length
        self.accepted_at = self.accepted_at or [0] * self.draft_length

    def add(self, spec: Decoded, base: Decoded) -> None:
        self.prompts += 1
        self.verify_forwards += spec.target_forwards
        self.spec_tokens += sum(spec.emitted)
        self.drafted += sum(spec.drafted)
        self.accepted += sum(spec.accepted)
        for n_ok, k in zip(spec.accepted, spec.drafted, strict=True):
            # Position i (0-based) is reached when the i drafted tokens before it were all accepted.
            for i in range(min(n_ok + 1, k)):
                self.reached[i] += 1
            for i in range(n_ok):
                self.accepted_at[i] += 1
        self.draft_forwards += spec.draft_forwards
        self.draft_time += spec.draft_time
        self.verify_time += spec.verify_time
        self.spec_time += spec.decode_time
        self.base_tokens += len(base.tokens) - 1
        self.base_time += base.decode_time

    def metrics(self) -> dict[str, float | int | None]:
        """Every ratio is None where its denominator is zero (e.g. max_new_tokens=1: nothing decoded)."""

        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        spec_tps = ratio(self.spec_tokens, self.spec_time)
        base_tps = ratio(self.base_tokens, self.base_time)
        out: dict[str, float | int | None] = {
            "tau": ratio(self.spec_tokens, self.verify_forwards),
            "acceptance_rate": ratio(self.accepted, self.drafted),
        }
        for i in range(self.draft_length):
            out[f"acceptance_at_{i + 1}"] = ratio(self.accepted_at[i], self.reached[i])
        out.update(
            {
                "spec_tokens_per_s": spec_tps,
                "baseline_tokens_per_s": base_tps,
                "speedup": ratio(spec_tps or 0.0, base_tps or 0.0) if spec_tps else None,
                "draft_time_s": self.draft_time,
                "verify_time_s": self.verify_time,
                "spec_decode_time_s": self.spec_time,
                "baseline_decode_time_s": self.base_time,
                "prompts": self.prompts,
                "verify_forwards": self.verify_forwards,
                "draft_forwards": self.draft_forwards,
                "spec_tokens": self.spec_tokens,
                "baseline_tokens": self.base_tokens,
                "drafted": self.drafted,
                "accepted": self.accepted,
            }
        )
        return out


def summarize(
    results: Iterable[tuple[str, Decoded, Decoded]], draft_length: int
) -> dict[str, dict[str, float | int | None]]:
    """(category, spec, greedy) per prompt -> {"all": metrics, "<category>": metrics, ...}."""
    totals: dict[str, Totals] = {"all": Totals(draft_length)}
    for category, spec, base in results:
        totals["all"].add(spec, base)
        totals.setdefault(category, Totals(draft_length)).add(spec, base)
    return {scope: t.metrics() for scope, t in totals.items()}
