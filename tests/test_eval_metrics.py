"""Metrics are ratios of totals over prompts (house rule 7), checked on hand-made decode records."""

from __future__ import annotations

import pytest
import torch

from eval.metrics import Totals, summarize
from eval.spec_decode import Decoded, greedy_verifier


def spec(
    accepted: list[int], drafted: list[int], emitted: list[int] | None = None, t: float = 1.0
) -> Decoded:
    emitted = emitted or [a + 1 for a in accepted]
    tokens = [0] * (1 + sum(emitted))  # tokens[0] comes from the prefill and is not counted
    return Decoded(tokens=tokens, accepted=accepted, drafted=drafted, emitted=emitted, decode_time=t)


def greedy(n_new: int, t: float) -> Decoded:
    return Decoded(tokens=[0] * (n_new + 1), emitted=[1] * n_new, decode_time=t)


def test_tau_is_ratio_of_totals_not_mean_of_ratios() -> None:
    # Prompt A: 10 verifications, nothing accepted -> 10 tokens (tau 1).
    # Prompt B: 5 verifications, all 4 accepted -> 25 tokens (tau 5).
    a = spec([0] * 10, [4] * 10)
    b = spec([4] * 5, [4] * 5)
    m = summarize([("chat", a, greedy(10, 1.0)), ("docs", b, greedy(25, 1.0))], draft_length=4)
    assert m["all"]["tau"] == pytest.approx(35 / 15)  # not (1 + 5) / 2 = 3
    assert m["chat"]["tau"] == pytest.approx(1.0)
    assert m["docs"]["tau"] == pytest.approx(5.0)
    # Position 1 reached 15 times, accepted 5 times; positions 2-4 reached only in B, always accepted.
    assert m["all"]["acceptance_at_1"] == pytest.approx(5 / 15)
    assert m["all"]["acceptance_at_2"] == pytest.approx(1.0)
    assert m["all"]["acceptance_rate"] == pytest.approx(20 / 60)


def test_acceptance_by_position_is_conditional_on_reaching_it() -> None:
    # k=3: accepted 1 of 3 (reached 1,2; accepted 1), accepted 0 (reached 1), accepted 3 (reached 1,2,3).
    m = Totals(3)
    m.add(spec([1, 0, 3], [3, 3, 3]), greedy(8, 1.0))
    out = m.metrics()
    assert m.reached == [3, 2, 1]
    assert m.accepted_at == [2, 1, 1]
    assert out["acceptance_at_1"] == pytest.approx(2 / 3)
    assert out["acceptance_at_2"] == pytest.approx(1 / 2)
    assert out["acceptance_at_3"] == pytest.approx(1.0)


def test_truncated_last_step_and_short_drafts() -> None:
    # Last verification drafted only 1 token (near max_new_tokens) and an eos cut its output to 1 token.
    d = spec([2, 1], [4, 1], emitted=[3, 1])
    m = Totals(4)
    m.add(d, greedy(4, 2.0))
    assert m.reached == [2, 1, 1, 0]
    out = m.metrics()
    assert out["tau"] == pytest.approx(4 / 2)
    assert out["acceptance_at_4"] is None  # never reached: no number rather than a made-up 0


def test_speed_is_ratio_of_summed_tokens_and_seconds() -> None:
    a = spec([0] * 4, [2] * 4, t=4.0)  # 4 tokens in 4 s
    b = spec([2] * 4, [2] * 4, t=1.0)  # 12 tokens in 1 s
    m = summarize([("x", a, greedy(4, 2.0)), ("x", b, greedy(12, 2.0))], draft_length=2)["all"]
    assert m["spec_tokens_per_s"] == pytest.approx(16 / 5)  # mean of per-prompt rates would be 6.5
    assert m["baseline_tokens_per_s"] == pytest.approx(16 / 4)
    assert m["speedup"] == pytest.approx((16 / 5) / (16 / 4))


def test_greedy_verifier_keeps_longest_agreeing_prefix() -> None:
    target = torch.tensor([5, 6, 7, 8, 9])
    assert greedy_verifier(torch.tensor([5, 6, 0, 8]), target) == 2
    assert greedy_verifier(torch.tensor([5, 6, 7, 8]), target) == 4
    assert greedy_verifier(torch.tensor([1, 6, 7, 8]), target) == 0
    assert greedy_verifier(torch.tensor([], dtype=torch.long), target) == 0
