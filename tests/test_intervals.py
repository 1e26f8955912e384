"""The interval code (eval/intervals.py) against distributions whose answer is known: coverage of the
bootstrap and Student-t intervals over many seeded draws, the ratio bootstrap on per-prompt counts with a
known ratio, the two-stage bootstrap over seeds, and the t-interval of a least-squares slope.

Coverage tolerances: with D draws a true 95 % interval covers a binomial(D, 0.95) number of times, standard
deviation sqrt(0.95 * 0.05 / D) (0.49 % at D = 2000, 0.97 % at D = 500); each test allows about 3 of those,
plus the known small-sample shortfall of a percentile bootstrap where stated."""

from __future__ import annotations

import numpy as np
import pytest

from eval.intervals import (
    bootstrap_ci,
    least_squares_se,
    mean_t_interval,
    ratio_ci,
    t_interval,
    totals_ci,
)


def _coverage(intervals: list[tuple[float, float] | None], truth: float) -> float:
    return float(np.mean([ci is not None and ci[0] <= truth <= ci[1] for ci in intervals]))


def test_t_interval_of_a_mean_covers_95_percent_of_normal_samples() -> None:
    rng = np.random.default_rng(10)
    draws = [mean_t_interval(rng.normal(3.0, 2.0, 6)) for _ in range(2000)]
    assert abs(_coverage(draws, 3.0) - 0.95) < 0.015
    # The half-width is t_{5} * s / sqrt(6): for s = 1, 2.5706 / sqrt(6).
    lo, hi = t_interval(0.0, 1.0 / np.sqrt(6), 5)
    assert hi == pytest.approx(2.5706 / np.sqrt(6), rel=1e-4) and lo == pytest.approx(-hi)


def test_bootstrap_of_a_mean_covers_about_95_percent_and_t_more_on_few_points() -> None:
    """The mean as a ratio of totals (values over ones). At n = 40 the percentile bootstrap covers about
    95 %; at n = 5 it falls short (it cannot see tails five points never showed), which is why the laws
    print the t-interval beside it, and the t-interval holds 95 % there."""
    rng = np.random.default_rng(11)
    big = [
        ratio_ci(v, np.ones(40), n_boot=500, seed=i) for i, v in enumerate(rng.normal(1.5, 0.5, (500, 40)))
    ]
    assert 0.92 <= _coverage(big, 1.5) <= 0.975
    small = rng.normal(1.5, 0.5, (500, 5))
    boot5 = _coverage([ratio_ci(v, np.ones(5), n_boot=500, seed=i) for i, v in enumerate(small)], 1.5)
    t5 = _coverage([mean_t_interval(v) for v in small], 1.5)
    assert boot5 < 0.91 and abs(t5 - 0.95) < 0.03


def test_ratio_bootstrap_of_per_prompt_counts_covers_the_known_ratio() -> None:
    """Prompts of different lengths; each verify forward emits 1 + Binomial(4, 0.35) tokens, so the
    population tau is 1 + 4 * 0.35 = 2.4. The interval resamples prompts and recomputes the ratio of totals;
    it covers 2.4 about 95 % of the time and is deterministic for a seed."""
    rng = np.random.default_rng(12)
    cover = []
    for i in range(400):
        steps = rng.integers(3, 30, 32)
        tokens = np.array([(1 + rng.binomial(4, 0.35, s)).sum() for s in steps])
        cover.append(ratio_ci(tokens, steps, n_boot=400, seed=i))
    assert 0.92 <= _coverage(cover, 2.4) <= 0.98
    assert ratio_ci(tokens, steps) == ratio_ci(tokens, steps)


def test_ratio_bootstrap_is_a_ratio_of_totals_not_a_mean_of_ratios() -> None:
    # 20 long prompts at tau 1 (40 steps, 40 tokens) and 20 short ones at tau 5 (2 steps, 10 tokens): the ratio
    # of totals is 1000 / 840 = 1.19; a mean of per-prompt taus would be 3. Every resample's ratio of totals
    # stays near 1.19, so the interval does too.
    tokens = np.array([40] * 20 + [10] * 20)
    steps = np.array([40] * 20 + [2] * 20)
    lo, hi = ratio_ci(tokens, steps)
    assert lo <= 1000 / 840 <= hi and hi < 1.4
    assert ratio_ci([3], [2]) is None and ratio_ci([1, 2], [0, 0]) is None


def test_two_stage_bootstrap_over_seeds_holds_the_spread_between_seeds() -> None:
    """Three seeds whose runs differ (tau 2.0, 2.3, 2.6), 40 prompts each: prompts alone (pooled as if one run)
    give an interval far narrower than the seeds' spread; resampling seeds, then prompts, spans it."""
    rng = np.random.default_rng(13)
    tokens, steps, seeds = [], [], []
    for seed, tau in enumerate((2.0, 2.3, 2.6)):
        s = rng.integers(10, 20, 40)
        tokens += list(np.round(s * tau + rng.normal(0, 1, 40)))
        steps += list(s)
        seeds += [seed] * 40
    flat = ratio_ci(tokens, steps)
    nested = ratio_ci(tokens, steps, groups=seeds)
    assert flat[1] - flat[0] < 0.15
    assert nested[0] < 2.15 and nested[1] > 2.45
    with pytest.raises(ValueError, match="group labels"):
        totals_ci(np.ones((3, 2)), lambda s: s[:, 0], groups=[0, 1])


def test_bootstrap_ci_of_any_statistic_and_se_of_a_least_squares_slope() -> None:
    """bootstrap_ci of the median; least_squares_se + t_interval of a line's slope on 6 points covers the
    true slope 95 % of the time (the small-n interval the laws print)."""
    lo, hi = bootstrap_ci(np.arange(101.0), np.median, n_boot=300)
    assert lo < 50 < hi
    rng = np.random.default_rng(14)
    u = np.log(np.geomspace(25e3, 8e5, 6))
    design = np.stack([np.ones_like(u), u], axis=1)
    hits = []
    for _ in range(2000):
        y = -4.0 + 0.5 * u + rng.normal(0, 0.08, u.size)
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        se = least_squares_se(design, y - design @ coef)
        lo, hi = t_interval(coef[1], se[1], u.size - 2)
        hits.append(lo <= 0.5 <= hi)
    assert abs(np.mean(hits) - 0.95) < 0.015
    assert np.isnan(least_squares_se(design[:2], np.zeros(2))).all()  # n == p: no spread left to estimate
