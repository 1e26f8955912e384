"""The warm-up rule, fixed before looking at any law's slope: where does the tokens curve enter the regime
the law describes?

A warm-up is a first regime in which tau grows more slowly with ln(tokens) than it does later (the head is
still learning a path, e.g. layer 0's attention in the eagle3 layout). The rule fits tau against u = ln(T)
twice: one line, and two lines joined at a break point b (a continuous hinge, y = a + s1*u + (s2 - s1) *
max(0, u - b)), with b chosen by least squares on a fine grid that leaves at least 2 budgets at or before it
and 3 at or after it (a regime is at least a line; the law needs 3 points). A warm-up is declared when

  - the hinge's BIC (n ln(SSR/n) + k ln n; k = 2 for the line, 4 for the hinge: a, s1, s2, b) is below the
    line's, i.e. the second regime is worth its two extra parameters, and
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
RULE = (
    "two-regime (hinge) fit of the metric vs ln(tokens); break by least squares; a warm-up when BIC prefers "
    "the hinge to one line and the slope rises at the break; budgets at or after the break are fitted"
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
    bic_line: float | None = None
    bic_hinge: float | None = None

    def cut(self) -> float:
        """Budgets below this leave the fits (0: none)."""
        return float(self.break_tokens) if self.detected and self.break_tokens else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"rule": RULE, **{k: v for k, v in self.__dict__.items()}}


def _ssr_line(u: Array, y: Array) -> float:
    design = np.stack([np.ones_like(u), u], axis=1)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(np.sum((y - design @ coef) ** 2))


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


def _bic(ssr: float, n: int, k: int) -> float:
    return n * np.log(max(ssr, 1e-300) / n) + k * np.log(n)


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
    bic_line, bic_hinge = _bic(_ssr_line(u, y), n, 2), _bic(ssr, n, 4)
    fitted = _hinge_design(u, b) @ coef
    # Residuals scaled up for the 4 fitted parameters, so the bootstrap's noise matches the data's.
    resid = (y - fitted) * np.sqrt(n / (n - 4))
    resid -= resid.mean()
    rng = np.random.default_rng(seed)
    boot_breaks = fit_hinges(u, fitted + rng.choice(resid, (n_boot, n)), grid)[0]
    lo, hi = percentile_interval(np.exp(boot_breaks))
    s1, s2 = float(coef[1]), float(coef[1] + coef[2])
    if bic_hinge >= bic_line:
        detected, reason = False, "one line fits as well (BIC of the hinge not below the line's)"
    elif s2 <= s1:
        detected, reason = False, "the slope falls at the break (saturation, part of the law), not a warm-up"
    else:
        detected, reason = True, "BIC prefers two regimes and the slope rises at the break"
    return Warmup(detected, reason, float(np.exp(b)), (lo, hi), s1, s2, float(bic_line), float(bic_hinge))
