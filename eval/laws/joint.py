"""The joint law over pretraining tokens T and draft capacity P (trainable parameters):

    tau = a + b*ln(T) + c*ln(P)

Why this form: each axis alone is log-linear in the Scylla paper, and with two points per axis at most in a
tiny sweep an interaction term (d*ln T*ln P) cannot be pinned down; additivity in the logs is the
least-parameter form consistent with both single-axis laws. Fitted by ordinary least squares with bootstrap
intervals, as the single-axis fits are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.intervals import least_squares_se, t_interval
from eval.laws.fit import CI, r_squared

Array = np.ndarray
PARAMS = ("a", "b", "c")
FORMULA = "a + b*ln(T) + c*ln(P)"


def _design(tokens: Array, params: Array) -> Array:
    return np.stack([np.ones_like(tokens), np.log(tokens), np.log(params)], axis=1)


@dataclass
class JointFit:
    tokens: Array
    capacity: Array
    y: Array
    coef: Array
    r2: float
    loo_rmse: float
    boot: Array = field(repr=False)

    def predict(self, tokens, capacity, coef: Array | None = None) -> Array:
        c = self.coef if coef is None else coef
        return c[0] + c[1] * np.log(tokens) + c[2] * np.log(capacity)

    def to_json(self) -> dict[str, Any]:
        lo, hi = np.percentile(self.boot, CI, axis=0)
        design = _design(self.tokens, self.capacity)
        se = least_squares_se(design, self.y - design @ self.coef)
        dof = len(self.y) - len(PARAMS)
        return {
            "formula": FORMULA,
            "params": dict(zip(PARAMS, map(float, self.coef), strict=True)),
            "ci95": {n: (float(a), float(b)) for n, a, b in zip(PARAMS, lo, hi, strict=True)},
            "t_ci95": {
                n: t_interval(float(c), float(e), dof) for n, c, e in zip(PARAMS, self.coef, se, strict=True)
            },
            "r2": self.r2,
            "loo_rmse": self.loo_rmse,
            "n_points": len(self.y),
            "tokens": self.tokens.tolist(),
            "capacity": self.capacity.tolist(),
            "y": self.y.tolist(),
            "boot_params": self.boot.tolist(),
        }


def _solvable(design: Array) -> bool:
    return np.linalg.matrix_rank(design) == design.shape[1]


def fit_joint(tokens, capacity, y, n_boot: int = 1000, seed: int = 0) -> JointFit:
    t, p, y = (np.asarray(v, dtype=float) for v in (tokens, capacity, y))
    design = _design(t, p)
    if not _solvable(design):
        raise ValueError("joint fit needs points that vary both tokens and capacity (rank-deficient design)")
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        if not _solvable(design[keep]):
            errs = [np.nan]
            break
        c = np.linalg.lstsq(design[keep], y[keep], rcond=None)[0]
        errs.append(y[i] - design[i] @ c)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if _solvable(design[idx]):
            boot.append(np.linalg.lstsq(design[idx], y[idx], rcond=None)[0])
    loo = float(np.sqrt(np.mean(np.square(errs))))
    return JointFit(t, p, y, coef, r_squared(y, design @ coef), loo, np.stack(boot))
