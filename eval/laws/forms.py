"""Candidate functional forms y(x) for a law. Each is fitted on u = ln(x), the axis the Scylla paper
reports as linear; the alternatives bend away from that line in the two ways tau can: growing faster than
log (power law) or levelling off towards a ceiling (saturating exponential in ln x)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

Array = np.ndarray


@dataclass(frozen=True)
class Form:
    name: str
    params: tuple[str, ...]
    formula: str  # printed in reports, in terms of x
    f: Callable[..., Array]  # f(u, *params) with u = ln x
    guess: Callable[[Array, Array], list[float]]  # starting point for the nonlinear solver

    def fit(self, u: Array, y: Array) -> Array:
        """Least-squares parameters; closed form for the linear law, Levenberg-Marquardt otherwise."""
        if self.name == "log_linear":
            design = np.stack([np.ones_like(u), u], axis=1)
            return np.linalg.lstsq(design, y, rcond=None)[0]
        popt, _ = curve_fit(self.f, u, y, p0=self.guess(u, y), maxfev=2000)
        return np.asarray(popt)

    def predict(self, params: Array, x: Array | float) -> Array:
        return self.f(np.log(np.asarray(x, dtype=float)), *params)


def _line(u: Array, y: Array) -> tuple[float, float]:
    b, a = np.polyfit(u, y, 1)
    return float(a), float(b)


def _power_guess(u: Array, y: Array) -> list[float]:
    b, ln_a = np.polyfit(u, np.log(np.clip(y, 1e-9, None)), 1)
    return [float(np.exp(ln_a)), float(b)]


def _saturating_guess(u: Array, y: Array) -> list[float]:
    # Ceiling a bit above the largest value; rate from the line's slope at the start of the range.
    span = float(np.ptp(y)) or 1.0
    c = float(y.max()) + 0.5 * span
    a = c - float(y[np.argmin(u)])
    return [c, a * float(np.exp(u.min() * 0.5)), 0.5]


LOG_LINEAR = Form(
    "log_linear", ("a", "b"), "a + b*ln(x)", lambda u, a, b: a + b * u, lambda u, y: list(_line(u, y))
)
POWER_LAW = Form("power_law", ("a", "b"), "a * x**b", lambda u, a, b: a * np.exp(b * u), _power_guess)
SATURATING = Form(
    "saturating_exp", ("c", "a", "b"), "c - a*exp(-b*ln(x))", lambda u, c, a, b: c - a * np.exp(-b * u),
    _saturating_guess,
)  # fmt: skip
FORMS: dict[str, Form] = {f.name: f for f in (LOG_LINEAR, POWER_LAW, SATURATING)}
