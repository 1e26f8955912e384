"""95 % intervals, one home for all of them: a percentile bootstrap (of a ratio of totals over prompts, over
seeds then prompts where runs are pooled, or of any statistic of a sample) and Student-t intervals (of a mean,
or of a fitted parameter from its standard error) for the small n where a bootstrap is too narrow.

Every bootstrap here is seeded (default SEED), so a report reprints to the last digit. A ratio such as tau is
re-estimated on each resample as sum(numerators) / sum(denominators), the estimator the report prints (house
rule 7), never as a mean of per-prompt ratios.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95
N_BOOT = 1000
SEED = 0

Interval = tuple[float, float]


def _tails(level: float) -> tuple[float, float]:
    alpha = 100.0 * (1.0 - level) / 2.0
    return alpha, 100.0 - alpha


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> Interval:
    """The central `level` range of bootstrap replicates (nan replicates, from empty resamples, dropped)."""
    kept = np.asarray(samples, dtype=float)
    kept = kept[np.isfinite(kept)]
    lo, hi = np.percentile(kept, _tails(level))
    return float(lo), float(hi)


def totals_ci(
    units: np.ndarray,
    of_totals: Callable[[np.ndarray], np.ndarray],
    groups: Sequence[object] | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval | None:
    """Percentile bootstrap of a statistic of column totals: `units` holds one row of additive counts per
    unit (a prompt: tokens, verify forwards; a batch: tokens, seconds); each replicate resamples the rows with
    replacement, sums each column and applies `of_totals` (vectorised: [n_boot, columns] -> [n_boot]).
    `groups` (one label per unit, e.g. the training seed of the run that decoded a prompt) makes it
    two-stage: resample the groups, then units within each drawn group, so the interval holds the spread
    between seeds as well as between prompts. None with fewer than 2 units (no spread to resample)."""
    rows = np.asarray(units, dtype=float)
    if rows.ndim != 2 or len(rows) < 2:
        return None
    rng = np.random.default_rng(seed)
    if groups is None:
        sums = rows[rng.integers(0, len(rows), (n_boot, len(rows)))].sum(axis=1)
    else:
        if len(groups) != len(rows):
            raise ValueError(f"totals_ci: {len(groups)} group labels for {len(rows)} units")
        labels = list(dict.fromkeys(groups))
        members = [np.flatnonzero([g == lab for g in groups]) for lab in labels]
        sums = np.zeros((n_boot, rows.shape[1]))
        for b in range(n_boot):
            for g in rng.integers(0, len(labels), len(labels)):
                sums[b] += rows[rng.choice(members[g], len(members[g]))].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return percentile_interval(of_totals(sums), level)


def ratio_ci(
    num: Sequence[float],
    den: Sequence[float],
    groups: Sequence[object] | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval | None:
    """Bootstrap interval of the ratio estimator sum(num) / sum(den) over units (e.g. tau = tokens emitted /
    verify forwards over prompts): the ratio of each resample's totals, not a mean of per-unit ratios. None
    with fewer than 2 units or no denominator."""
    if len(num) != len(den):
        raise ValueError(f"ratio_ci: {len(num)} numerators but {len(den)} denominators")
    if len(num) < 2 or float(np.sum(den)) <= 0:
        return None
    units = np.stack([np.asarray(num, dtype=float), np.asarray(den, dtype=float)], axis=1)
    return totals_ci(units, lambda s: s[:, 0] / s[:, 1], groups, n_boot, seed, level)


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """Percentile bootstrap of `stat` over a sample (resample the values with replacement)."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    reps = np.array([stat(v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)])
    return percentile_interval(reps, level)


def t_interval(estimate: float, se: float, dof: int, level: float = LEVEL) -> Interval:
    """estimate +- t_{dof} * se: the interval of a parameter with standard error se on dof degrees of freedom
    (n - number of fitted parameters). Wider than a bootstrap on few points, which cannot see tails that
    five points never showed it."""
    if dof < 1 or not np.isfinite(se):
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2.0, dof)) * se
    return estimate - half, estimate + half


def mean_t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of a sample (e.g. tau over n seeds)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    return t_interval(float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))), len(v) - 1, level)


def least_squares_se(jacobian: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Standard errors of least-squares parameters: sqrt(diag(s^2 (J^T J)^-1)), s^2 = SSR / (n - p), with J the
    model's derivatives by parameter at the fit (the design matrix of a linear model). nan if n <= p."""
    n, p = jacobian.shape
    if n <= p:
        return np.full(p, np.nan)
    s2 = float(np.sum(residuals**2)) / (n - p)
    try:
        cov = s2 * np.linalg.inv(jacobian.T @ jacobian)
    except np.linalg.LinAlgError:
        return np.full(p, np.nan)
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))


def fmt_interval(ci: Sequence[float] | None, digits: int = 4) -> str:
    """ "[lo, hi]" as the reports print it; "[-]" where no interval could be said."""
    if ci is None or not all(np.isfinite(ci)):
        return "[-]"
    return f"[{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
