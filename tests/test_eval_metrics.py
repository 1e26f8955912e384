"""Metrics are ratios of totals over prompts and batches (house rule 7), checked on hand-made records."""

from __future__ import annotations

import pytest
import torch

from eval.engine import BatchStats, RowResult
from eval.intervals import ratio_ci
from eval.metrics import Totals, summarize
from eval.verify import TreeVerifier
from train.decoding.drafter import DraftTree
from train.decoding.sampling import Sampling


def spec(
    accepted: list[int], reached: list[int] | None = None, emitted: list[int] | None = None
) -> RowResult:
    emitted = emitted or [a + 1 for a in accepted]
    reached = reached or [min(a + 1, 4) for a in accepted]
    tokens = [0] * (1 + sum(emitted))  # tokens[0] comes from the prefill and is not counted
    return RowResult(
        tokens=tokens, accepted=accepted, reached=reached, drafted=[4] * len(accepted), emitted=emitted
    )


def base(n_new: int) -> RowResult:
    return RowResult(tokens=[0] * (n_new + 1), emitted=[1] * n_new)


def stats(steps: int, t: float, draft: float = 0.0, verify: float = 0.0) -> BatchStats:
    return BatchStats(batch_size=1, steps=steps, draft_time=draft, verify_time=verify, decode_time=t)


def test_tau_is_ratio_of_totals_not_mean_of_ratios() -> None:
    # Prompt A: 10 verifications, nothing accepted -> 10 tokens (tau 1). B: 5, all 4 accepted -> 25 (tau 5).
    a, b = spec([0] * 10), spec([4] * 5)
    m = summarize([(["chat"], [a], [base(10)], stats(10, 1.0), stats(10, 1.0)),
                   (["docs"], [b], [base(25)], stats(5, 1.0), stats(25, 1.0))], positions=4)  # fmt: skip
    assert m["all"]["tau"] == pytest.approx(35 / 15)  # not (1 + 5) / 2 = 3
    assert m["chat"]["tau"] == pytest.approx(1.0) and m["docs"]["tau"] == pytest.approx(5.0)
    assert m["all"]["acceptance_at_1"] == pytest.approx(5 / 15)
    assert m["all"]["acceptance_at_2"] == pytest.approx(1.0)
    assert m["all"]["acceptance_rate"] == pytest.approx(20 / 60)


def test_intervals_resample_prompts_for_tau_and_batches_for_speedup() -> None:
    """tau's interval is the ratio bootstrap of the per-prompt counts (eval/intervals.py), so it holds tau and
    lies between the smallest and largest prompt's own tau; speed-up's resamples batches. One prompt: no
    interval (None), never a zero-width one."""
    rows = [spec([0] * 10), spec([4] * 5), spec([1] * 8), spec([2] * 6)]
    batches = [
        (["chat"], [r], [base(12)], stats(r.steps, 1.0 + i), stats(12, 2.0)) for i, r in enumerate(rows)
    ]
    m = summarize(batches, positions=4)["all"]
    lo, hi = m["tau_ci95"]
    assert 1.0 <= lo < m["tau"] < hi <= 5.0
    lo, hi = m["speedup_ci95"]
    assert lo < m["speedup"] < hi
    assert ratio_ci([10, 25, 16, 18], [10, 5, 8, 6]) == tuple(m["tau_ci95"])
    single = summarize(batches[:1], positions=4)["all"]
    assert single["tau_ci95"] is None and single["speedup_ci95"] is None


def test_acceptance_by_position_is_conditional_on_reaching_it() -> None:
    # Depth 3 tree: accepted 1 (then tested depth 2: reached 2), accepted 0 (reached 1), accepted 2 at a
    # leaf (nothing below it to test: reached 2).
    m = Totals(3)
    m.add_row(spec([1, 0, 2], reached=[2, 1, 2]), base(6))
    assert m.reached_at == [3, 2, 0] and m.accepted_at == [2, 1, 0]
    out = m.metrics()
    assert out["acceptance_at_1"] == pytest.approx(2 / 3)
    assert out["acceptance_at_2"] == pytest.approx(1 / 2)
    assert out["acceptance_at_3"] is None  # never reached: no number rather than a made-up 0


def test_speed_ceiling_and_mixed_batches() -> None:
    # Batch of two categories: 'all' is timed, the categories' own speeds are not separable.
    rows = [spec([1] * 4), spec([3] * 4)]
    m = summarize(
        [(["x", "y"], rows, [base(8), base(16)], stats(4, 2.0, 1.0, 0.8), stats(16, 4.0))], positions=4
    )
    assert m["x"]["speedup"] is None and m["x"]["tau"] == pytest.approx(2.0)
    a = m["all"]
    assert a["spec_tokens_per_s"] == pytest.approx(24 / 2.0) and a["baseline_tokens_per_s"] == pytest.approx(
        24 / 4.0
    )
    assert a["speedup"] == pytest.approx(2.0)
    tau, draft_ms, verify_ms, base_ms = 3.0, 250.0, 200.0, 250.0
    assert (a["tau"], a["draft_ms"], a["verify_ms"], a["baseline_step_ms"]) == pytest.approx(
        (tau, draft_ms, verify_ms, base_ms)
    )
    assert a["speedup_ceiling"] == pytest.approx(tau / (1 + draft_ms / base_ms))
    assert a["speedup_cost_model"] == pytest.approx(tau * base_ms / (draft_ms + verify_ms))


def test_greedy_walk_follows_the_argmax_through_the_tree() -> None:
    # Root's children: 5 (node 0), 6 (node 1); node 1's children: 7 (node 2), 8 (node 3).
    tree = DraftTree(
        torch.tensor([[5, 6, 7, 8]]), torch.tensor([[-1, -1, 1, 1]]), torch.tensor([[1, 1, 2, 2]])
    )
    logits = torch.zeros(1, 5, 10)
    for at, tok in [(0, 6), (2, 8), (4, 9)]:  # root -> 6, node 1 -> 8, node 3 -> 9 (bonus)
        logits[0, at, tok] = 1.0
    (walk,) = TreeVerifier(Sampling())(tree, logits, None)
    assert walk.path == [1, 3] and walk.token == 9 and walk.reached == 2
