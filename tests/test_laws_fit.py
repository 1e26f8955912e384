"""The law fitter: parameter recovery from noisy synthetic data, R^2 and leave-one-out error against a
hand-worked case, model selection, the joint law and the plots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.laws.fit import best_form, compare_forms, fit_form, loo_rmse, r_squared
from eval.laws.forms import FORMS
from eval.laws.joint import fit_joint

TOKENS = np.geomspace(1e4, 1e7, 12)


def test_log_linear_hand_worked_r2_and_loo() -> None:
    # u = ln x = 0, 1, 2; y = 1, 2, 4. Least squares: b = 1.5, a = 5/6; residuals 1/6, -1/3, 1/6, so
    # SS_res = 1/6, SS_tot = 14/3, R^2 = 27/28. Leave-one-out lines: y = 2u (predicts 0 for 1), y = 1 + 1.5u
    # (2.5 for 2), y = 1 + u (3 for 4): errors 1, -0.5, 1, RMSE sqrt(0.75).
    x, y = np.exp([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 4.0])
    fit = fit_form("log_linear", x, y, n_boot=50)
    assert fit.params == pytest.approx([5 / 6, 1.5])
    assert fit.r2 == pytest.approx(27 / 28)
    assert r_squared(y, fit.predict(x)) == pytest.approx(27 / 28)
    assert loo_rmse(FORMS["log_linear"], x, y) == pytest.approx(math.sqrt(0.75))
    assert fit.loo_rmse == pytest.approx(math.sqrt(0.75))


def test_log_linear_recovers_parameters_within_bootstrap_ci() -> None:
    rng = np.random.default_rng(1)
    a, b = 1.2, 0.35
    y = a + b * np.log(TOKENS) + rng.normal(0, 0.05, TOKENS.size)
    fit = fit_form("log_linear", TOKENS, y, n_boot=500)
    ci = fit.ci()
    assert ci["a"][0] <= a <= ci["a"][1]
    assert ci["b"][0] <= b <= ci["b"][1]
    assert ci["b"][1] - ci["b"][0] < 0.05  # the interval is informative, not everything
    assert fit.r2 > 0.98


@pytest.mark.parametrize("truth", ["power_law", "saturating_exp"])
def test_nonlinear_forms_recover_parameters_and_win_selection(truth: str) -> None:
    params = {"power_law": [0.6, 0.12], "saturating_exp": [4.5, 40.0, 0.4]}[truth]
    rng = np.random.default_rng(2)
    y = FORMS[truth].predict(np.array(params), TOKENS) + rng.normal(0, 0.02, TOKENS.size)
    fits = compare_forms(TOKENS, y, n_boot=300)
    assert best_form(fits) == truth
    fit = fits[truth]
    for name, value in zip(fit.law.params, params, strict=True):
        lo, hi = fit.ci()[name]
        assert lo <= value <= hi, (name, value, lo, hi)


def test_selection_prefers_log_linear_when_the_data_are_log_linear() -> None:
    rng = np.random.default_rng(3)
    y = 1.0 + 0.2 * np.log(TOKENS) + rng.normal(0, 0.03, TOKENS.size)
    fits = compare_forms(TOKENS, y, n_boot=100)
    assert fits["log_linear"].loo_rmse < fits["power_law"].loo_rmse
    assert best_form(fits) == "log_linear"


def test_too_few_points_for_a_form_is_refused_not_faked() -> None:
    with pytest.raises(ValueError, match="cannot fit 3 parameters"):
        fit_form("saturating_exp", [1.0, 10.0], [1.0, 2.0])
    assert set(compare_forms([1.0, 10.0, 100.0], [1.0, 1.5, 2.2], n_boot=20)) == {"log_linear", "power_law",
                                                                                  "saturating_exp"}  # fmt: skip
    assert math.isnan(
        loo_rmse(FORMS["saturating_exp"], np.array([1.0, 10.0, 100.0]), np.array([1.0, 1.5, 2.2]))
    )


def test_joint_law_recovers_token_and_capacity_slopes() -> None:
    rng = np.random.default_rng(4)
    t = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 1e5, 1e5, 1e5])
    p = np.array([2e6, 2e6, 2e6, 2e6, 2e6, 1e6, 4e6, 8e6])
    y = 0.5 + 0.3 * np.log(t) + 0.15 * np.log(p) + rng.normal(0, 0.02, t.size)
    fit = fit_joint(t, p, y, n_boot=400)
    ci = fit.to_json()["ci95"]
    for name, value in (("a", 0.5), ("b", 0.3), ("c", 0.15)):
        assert ci[name][0] <= value <= ci[name][1], name
    assert fit.r2 > 0.98
    with pytest.raises(ValueError, match="rank-deficient"):
        fit_joint(t[:5], p[:5], y[:5])  # capacity never varies: c cannot be separated from a


def test_plot_writes_png(tmp_path) -> None:
    from eval.laws.plots import plot_fit

    y = 1.0 + 0.2 * np.log(TOKENS)
    fit = fit_form("log_linear", TOKENS, y + np.random.default_rng(5).normal(0, 0.02, TOKENS.size), n_boot=50)
    path = plot_fit(fit, tmp_path / "law.png", "tokens", "tau", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
