"""The warm-up rule, fixed before looking at any law's slope: where does the tokens curve enter the regime
the law describes?

A warm-up is a first regime in which tau grows more slowly with ln(tokens) than it does later (the head is
still learning a path, e.g. layer 0's attention in the eagle3 layout). The rule fits tau against u = ln(T)
twice: one line, and two lines joined at a break point b (a continuous hinge, y = a + s1*u + (s2 - s1) *
max(0, u - b)), with b chosen by least squares on a fine grid that leaves at least 2 budgets at or before it
and 3 at or after it (a regime is at least a line; the law needs 3 points). A warm-up is declared when

  - one line is rejected at 5 %: the statistic F = (SSR_line - SSR_hinge) / SSR_hinge is compared with its
    distribution under one line (the line's fit plus resampled residuals, the break searched afresh on each
    replicate, since searching for the best break makes any curve look bent: BIC, which ignores that search,
    declared a break on 9 of 40 noisy straight lines of 8 budgets; this test on 4 of 100), and
  - the slope rises at the break (s2 > s1): a slope that falls is saturation, which is part of the law.

Then only budgets at or after the break enter the fits. The break's 95 % interval is a residual bootstrap
(refit the hinge to the fitted curve plus resampled residuals): x is a designed grid of budgets, and a
resample of (x, y) pairs from eight points often loses a whole regime. Nothing in the rule reads the law's
slope or the hold-out, so the cut cannot be tuned to make either look good; `--min-tokens` still overrides it,
and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eval.intervals import N_BOOT, SEED, percentile_interval

Array = np.ndarray
MIN_BEFORE, MIN_AFTER = 2, 3  # budgets at or before / at or after the break
GRID = 400  # candidate breaks between the first and last allowed budget (in ln T)
LEVEL = 0.05  # one line is rejected below this p-value
RULE = (
    "two-regime (hinge) fit of the metric vs ln(tokens); break by least squares; a warm-up when a bootstrap "
    "test rejects one line at 5 % and the slope rises at the break; budgets at or after the break are fitted"
)


@dataclass
class Warmup:
    """What the rule found on one tokens curve."""

    detected: bool
    reason: str  # why (not) detected, in words
    break_tokens: float | None = None  # the least-squares break (whether or not it is declared)
    ci95: tuple[float, float] | None = None  # its residual-bootstrap interval, in tokens
    slope_before: float | None = None
    slope_after: float | None = None
    p_value: float | None = None  # of one line against two regimes (bootstrap, break search included)

    def cut(self) -> float:
        """Budgets below this leave the fits (0: none)."""
        return float(self.break_tokens) if self.detected and self.break_tokens else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"rule": RULE, **{k: v for k, v in self.__dict__.items()}}


def fit_lines(u: Array, ys: Array) -> tuple[Array, Array]:
    """Least-squares line through each row of ys ([m, n]): (fitted values [m, n], SSR [m])."""
    design = np.stack([np.ones_like(u), u], axis=1)
    fitted = ys @ (design @ np.linalg.pinv(design)).T
    return fitted, ((ys - fitted) ** 2).sum(axis=1)


def _resample(rng: np.random.Generator, fitted: Array, resid: Array, n_params: int, n_boot: int) -> Array:
    """n_boot replicates of fitted + resampled residuals, the residuals centred and scaled up for the fitted
    parameters so the replicates' noise matches the data's."""
    n = len(resid)
    r = (resid - resid.mean()) * np.sqrt(n / (n - n_params))
    return fitted + rng.choice(r, (n_boot, n))


def _hinge_design(u: Array, b: float) -> Array:
    return np.stack([np.ones_like(u), u, np.maximum(0.0, u - b)], axis=1)


def fit_hinges(u: Array, ys: Array, grid: Array) -> tuple[Array, Array, Array]:
    """The best hinge for each row of ys ([m, n]) at once: (break [m], [a, s1, s2 - s1] [m, 3], SSR [m]).
    Every candidate break's design is fixed, so its least-squares solution is one pseudo-inverse applied to
    every row (the bootstrap's 1000 refits cost one matrix product)."""
    designs = np.stack([_hinge_design(u, b) for b in grid])  # [G, n, 3]
    coefs = np.einsum("gkn,mn->mgk", np.linalg.pinv(designs), ys)  # [m, G, 3]
    ssr = ((ys[:, None, :] - np.einsum("gnk,mgk->mgn", designs, coefs)) ** 2).sum(axis=-1)  # [m, G]
    best = ssr.argmin(axis=1)  # ties go to the earliest break
    rows = np.arange(len(ys))
    return grid[best], coefs[rows, best], ssr[rows, best]


def find_warmup(x, y, n_boot: int = N_BOOT, seed: int = SEED) -> Warmup:
    """Apply the rule to budgets x (tokens) and the metric y measured at them."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(x)
    u, y = np.log(x[order]), y[order]
    n = len(u)
    if n < MIN_BEFORE + MIN_AFTER + 1:
        return Warmup(
            False, f"{n} budgets: the rule needs >= {MIN_BEFORE + MIN_AFTER + 1} to fit two regimes"
        )
    grid = np.linspace(u[MIN_BEFORE - 1], u[n - MIN_AFTER], GRID)
    breaks, coefs, ssrs = fit_hinges(u, y[None, :], grid)
    b, coef, ssr = float(breaks[0]), coefs[0], float(ssrs[0])
    fitted = _hinge_design(u, b) @ coef
    rng = np.random.default_rng(seed)
    boot_breaks = fit_hinges(u, _resample(rng, fitted, y - fitted, 4, n_boot), grid)[0]
    lo, hi = percentile_interval(np.exp(boot_breaks))
    # The test: how often does a straight line plus noise bend as much as the data do?
    line, ssr_line = fit_lines(u, y[None, :])
    null = _resample(rng, line[0], y - line[0], 2, n_boot)
    null_ssr_line, null_ssr_hinge = fit_lines(u, null)[1], fit_hinges(u, null, grid)[2]
    tiny = 1e-12 * max(1.0, float(np.sum(y**2)))  # an exact fit would divide by zero
    f_obs = (float(ssr_line[0]) - ssr) / (ssr + tiny)
    f_null = (null_ssr_line - null_ssr_hinge) / (null_ssr_hinge + tiny)
    p = float((1 + np.sum(f_null >= f_obs)) / (1 + n_boot))
    s1, s2 = float(coef[1]), float(coef[1] + coef[2])
    if p >= LEVEL:
        detected, reason = False, f"one line is not rejected (p = {p:.3f} >= {LEVEL})"
    elif s2 <= s1:
        detected, reason = False, "the slope falls at the break (saturation, part of the law), not a warm-up"
    else:
        detected, reason = True, f"one line rejected (p = {p:.3f}) and the slope rises at the break"
    return Warmup(detected, reason, float(np.exp(b)), (lo, hi), s1, s2, p)
