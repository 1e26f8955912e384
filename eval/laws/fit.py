"""Least-squares fits of one law, with R^2, leave-one-out error and bootstrap confidence intervals.

Bootstrap: resample the (x, y) points with replacement and refit; a resample with fewer distinct x values
than the form has parameters (or on which the solver fails) is skipped and counted, never patched. The
interval of a parameter or of a prediction is the 2.5-97.5 percentile range over the kept refits.

Beside it, each parameter's Student-t interval (estimate +- t_{n-p} * standard error, from the fit's
derivatives by parameter: exact for the log-linear law, linearised for the others): on five or six points a
bootstrap cannot resample tails the points never showed, so it comes out narrower than it should.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning

from eval.intervals import least_squares_se, t_interval
from eval.laws.forms import FORMS, Form

Array = np.ndarray
CI = (2.5, 97.5)


def r_squared(y: Array, pred: Array) -> float:
    """1 - SS_res / SS_tot: the fraction of y's variance around its mean the fit explains."""
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _try_fit(form: Form, u: Array, y: Array) -> Array | None:
    if len(np.unique(u)) < len(form.params):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            p = form.fit(u, y)
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            return None
    return p if np.all(np.isfinite(p)) else None


def loo_rmse(form: Form, x: Array, y: Array) -> float:
    """Root mean square of the errors predicting each point from a fit on all the others (nan if any of
    those fits is impossible, e.g. 3 parameters from 2 points)."""
    u = np.log(x)
    errs = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        p = _try_fit(form, u[keep], y[keep])
        if p is None:
            return float("nan")
        errs.append(y[i] - form.f(u[i], *p))
    return float(np.sqrt(np.mean(np.square(errs))))


@dataclass
class Fit:
    """One form fitted to one axis; `boot` holds the bootstrap refits (rows of parameters)."""

    form: str
    x: Array
    y: Array
    params: Array
    r2: float
    loo_rmse: float
    boot: Array = field(repr=False)
    boot_skipped: int = 0

    @property
    def law(self) -> Form:
        return FORMS[self.form]

    def predict(self, x: Array | float) -> Array:
        return self.law.predict(self.params, x)

    def band(self, x: Array) -> tuple[Array, Array]:
        """Pointwise 95 % interval of the fitted curve at x, over the bootstrap refits."""
        preds = np.stack([self.law.predict(p, x) for p in self.boot])
        lo, hi = np.percentile(preds, CI, axis=0)
        return lo, hi

    def ci(self) -> dict[str, tuple[float, float]]:
        lo, hi = np.percentile(self.boot, CI, axis=0)
        return {n: (float(a), float(b)) for n, a, b in zip(self.law.params, lo, hi, strict=True)}

    def t_ci(self) -> dict[str, tuple[float, float]]:
        """Student-t 95 % interval per parameter (nan where n <= number of parameters)."""
        u = np.log(self.x)
        resid = self.y - self.law.f(u, *self.params)
        se = least_squares_se(jacobian(self.law, u, self.params), resid)
        dof = len(self.x) - len(self.params)
        return {
            n: t_interval(float(p), float(e), dof)
            for n, p, e in zip(self.law.params, self.params, se, strict=True)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "formula": self.law.formula,
            "params": dict(zip(self.law.params, map(float, self.params), strict=True)),
            "ci95": self.ci(),
            "t_ci95": self.t_ci(),
            "r2": self.r2,
            "loo_rmse": self.loo_rmse,
            "n_points": len(self.x),
            "bootstrap": {"kept": len(self.boot), "skipped": self.boot_skipped},
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "boot_params": self.boot.tolist(),
        }


def jacobian(form: Form, u: Array, params: Array) -> Array:
    """d f(u, *params) / d params by central differences ([n points, n params]); exact for a linear form."""
    cols = []
    for j, p in enumerate(params):
        h = 1e-6 * max(1.0, abs(float(p)))
        up, down = params.astype(float).copy(), params.astype(float).copy()
        up[j] += h
        down[j] -= h
        cols.append((form.f(u, *up) - form.f(u, *down)) / (2 * h))
    return np.stack(cols, axis=1)


def fit_form(form_name: str, x, y, n_boot: int = 1000, seed: int = 0) -> Fit:
    form = FORMS[form_name]
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0):
        raise ValueError(f"{form_name}: x must be > 0 (fitted on ln x), got {x.tolist()}")
    u = np.log(x)
    params = _try_fit(form, u, y)
    if params is None:
        raise ValueError(
            f"{form_name}: cannot fit {len(form.params)} parameters to {len(np.unique(x))} x values"
        )
    rng = np.random.default_rng(seed)
    boot, skipped = [], 0
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        p = _try_fit(form, u[idx], y[idx])
        if p is None:
            skipped += 1
        else:
            boot.append(p)
    if not boot:
        raise ValueError(f"{form_name}: every bootstrap resample failed to fit")
    r2 = r_squared(y, form.f(u, *params))
    return Fit(form_name, x, y, params, r2, loo_rmse(form, x, y), np.stack(boot), skipped)


def compare_forms(x, y, n_boot: int = 1000, seed: int = 0) -> dict[str, Fit]:
    """Every form that can be fitted to these points (a 3-parameter form needs at least 4 for LOO)."""
    fits = {}
    for name in FORMS:
        try:
            fits[name] = fit_form(name, x, y, n_boot, seed)
        except ValueError:
            continue
    return fits


def best_form(fits: dict[str, Fit]) -> str:
    """Lowest leave-one-out error; ties (and nan) go to the simpler, earlier form."""
    scored = [
        (f.loo_rmse if np.isfinite(f.loo_rmse) else np.inf, i, n) for i, (n, f) in enumerate(fits.items())
    ]
    return min(scored)[2]
