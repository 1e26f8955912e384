"""From a sweep's results table to the three laws (tokens, capacity, batch size), the joint law, the
per-position acceptance fits, the hold-out check and the cost tables the planner reads (laws.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eval.laws.batch import batch_table
from eval.laws.fit import Fit, best_form, compare_forms, fit_form
from eval.laws.forms import FORMS
from eval.laws.joint import fit_joint
from eval.laws.records import FLOPS_FORMULA

# law name -> (records axis, x field, x label)
AXES = {
    "tokens": ("tokens", "tokens_seen", "pretraining target tokens T"),
    "capacity": ("depth", "trainable_params", "draft trainable parameters P"),
    "batch": ("batch", "batch_size", "decoding batch size B"),
}


def metric(record: dict[str, Any], path: str) -> float | None:
    """ "t0/tree/tau" -> record["results"]["t0/tree"]["tau"]."""
    key, _, name = path.rpartition("/")
    return (record["results"].get(key) or {}).get(name)


def points(
    records: list[dict[str, Any]], axis: str, x_field: str, y_path: str
) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted({(float(r[x_field]), metric(r, y_path)) for r in records if r["axis"] == axis})
    pts = [(x, y) for x, y in pts if y is not None]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def holdout(x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Fit the log-linear law on every budget but the largest, predict the largest."""
    if len(x) < 4:
        return None
    last = int(np.argmax(x))
    keep = np.arange(len(x)) != last
    fit = fit_form("log_linear", x[keep], y[keep], n_boot=200)
    pred = float(fit.predict(x[last]))
    lo, hi = fit.band(np.array([x[last]]))
    err = (pred - y[last]) / y[last]
    return {"x": float(x[last]), "measured": float(y[last]), "predicted": pred, "ci95": [float(lo[0]), float(hi[0])],
            "relative_error": float(err), "within_10pct": bool(abs(err) <= 0.10)}  # fmt: skip


def fit_laws(
    records: list[dict[str, Any]], y_path: str = "t0/tree/tau", n_boot: int = 1000, min_tokens: float = 0
) -> dict[str, Any]:
    """min_tokens: tokens-axis budgets below it are a warm-up left out of every fit (the tokens, joint and
    per-position laws and the hold-out), as scaling-law fits leave out runs too short to be in the law's
    regime; which budgets were left out is written to laws.json and printed."""
    warmup = sorted(
        {r["tokens_seen"] for r in records if r["axis"] == "tokens" and r["tokens_seen"] < min_tokens}
    )
    records = [r for r in records if not (r["axis"] == "tokens" and r["tokens_seen"] < min_tokens)]
    out: dict[str, Any] = {"metric": y_path, "flops_formula": FLOPS_FORMULA, "laws": {}, "fits": {},
                           "min_tokens": min_tokens, "warmup_budgets_excluded": warmup}  # fmt: skip
    fits: dict[str, Fit] = {}
    for law, (axis, x_field, _) in AXES.items():
        y_of = y_path if law != "batch" else y_path.rpartition("/")[0] + "/speedup"
        x, y = points(records, axis, x_field, y_of)
        if len(x) < 3:
            out["laws"][law] = {"skipped": f"{len(x)} points on axis {axis!r} (need >= 3)"}
            continue
        forms = compare_forms(x, y, n_boot)
        best = best_form(forms)
        fits[law] = forms[best]
        out["laws"][law] = {"axis": axis, "x": x_field, "y": y_of, "best": best,
                            "forms": {n: f.to_json() for n, f in forms.items()}}  # fmt: skip
    trained = {r["train_key"]: r for r in records if r["axis"] in ("tokens", "depth")}.values()
    jt = [(r["tokens_seen"], r["trainable_params"], metric(r, y_path)) for r in trained]
    jt = [p for p in jt if p[2] is not None]
    try:
        out["joint"] = fit_joint(*zip(*jt, strict=True), n_boot=n_boot).to_json() if len(jt) >= 4 else None
    except ValueError as err:
        out["joint"] = {"skipped": str(err)}
    x, y = points(records, "tokens", "tokens_seen", y_path)
    out["holdout_largest_budget"] = holdout(x, y)
    out["acceptance_by_position"] = acceptance_fits(records, n_boot)
    out["capacity_map"] = {str(r["depth"]): r["trainable_params"] for r in trained}
    out["tokens_depth"] = next((r["depth"] for r in records if r["axis"] == "tokens"), None)
    ref = [r for r in records if r["axis"] in ("tokens", "depth") and r["batch_size"] == 1]
    out["draft_ms_by_depth"] = {str(r["depth"]): metric(r, "t0/tree/draft_ms") for r in ref}
    any_rec = next(iter(records), {})
    out["target_params"] = any_rec.get("target_params")
    out["ttt_steps"] = any_rec.get("ttt_steps")
    # tau <= deepest verified draft token + 1 (the bonus): the number of acceptance positions reported.
    shape = y_path.rpartition("/")[0]
    depths = [sum(k.startswith("acceptance_at_") for k in r["results"].get(shape, {})) for r in records]
    out["max_tau"] = 1 + max(depths, default=0) if any(depths) else None
    out["batch"] = batch_table(records)
    out["_fits"] = fits  # dropped before writing; plots use them
    return out


def acceptance_fits(records: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """Per-position acceptance of the greedy chain against ln(tokens): log-linear, slope and R^2."""
    out = {}
    rec = next((r for r in records if r["axis"] == "tokens" and "t0/chain" in r["results"]), None)
    if rec is None:
        return out
    for key in sorted(k for k in rec["results"]["t0/chain"] if k.startswith("acceptance_at_")):
        x, y = points(records, "tokens", "tokens_seen", f"t0/chain/{key}")
        if len(x) >= 3:
            f = fit_form("log_linear", x, y, n_boot=n_boot)
            out[key] = {"params": f.to_json()["params"], "ci95": f.ci(), "r2": f.r2}
    return out


def summary_lines(laws: dict[str, Any]) -> list[str]:
    lines = [f"metric: {laws['metric']} (tau = tokens per target forward, bonus counted)"]
    if laws.get("warmup_budgets_excluded"):
        left = ", ".join(f"{t:,.0f}" for t in laws["warmup_budgets_excluded"])
        lines.append(
            f"tokens budgets below --min-tokens {laws['min_tokens']:,.0f} left out as warm-up: {left}"
        )
    for law, entry in laws["laws"].items():
        if "skipped" in entry:
            lines.append(f"{law}: skipped ({entry['skipped']})")
            continue
        lines.append(f"{law} law ({entry['y']} vs {entry['x']}), best by leave-one-out: {entry['best']}")
        for name in FORMS.keys() - entry["forms"].keys():
            lines.append(f"  {name:15s} not fitted (too few distinct points, or the solver did not converge)")
        for name, f in entry["forms"].items():
            ps = ", ".join(
                f"{k}={v:.4g} [{f['ci95'][k][0]:.4g}, {f['ci95'][k][1]:.4g}]" for k, v in f["params"].items()
            )
            lines.append(
                f"  {name:15s} {f['formula']:24s} R^2={f['r2']:.3f} LOO-RMSE={f['loo_rmse']:.4g}  {ps}"
            )
    j = laws.get("joint")
    if j and "params" in j:
        ps = ", ".join(
            f"{k}={v:.4g} [{j['ci95'][k][0]:.4g}, {j['ci95'][k][1]:.4g}]" for k, v in j["params"].items()
        )
        lines.append(f"joint law tau = {j['formula']}: R^2={j['r2']:.3f} LOO-RMSE={j['loo_rmse']:.4g}  {ps}")
    elif j:
        lines.append(f"joint law: skipped ({j['skipped']})")
    h = laws.get("holdout_largest_budget")
    if h:
        verdict = "within" if h["within_10pct"] else "NOT within"
        lines.append(f"hold-out: fit on all budgets but the largest predicts tau {h['predicted']:.3f} "
                     f"[{h['ci95'][0]:.3f}, {h['ci95'][1]:.3f}] at T={h['x']:.0f}; measured {h['measured']:.3f} "
                     f"({100 * h['relative_error']:+.1f} %, {verdict} 10 %)")  # fmt: skip
    for key, a in laws.get("acceptance_by_position", {}).items():
        lines.append(
            f"  {key} (chain, T=0) = {a['params']['a']:.3f} + {a['params']['b']:.4f}*ln(T), R^2={a['r2']:.3f}"
        )
    return lines


def write_plots(laws: dict[str, Any], out: Path) -> dict[str, Path]:
    from eval.laws.plots import plot_batch, plot_fit

    paths = {}
    for law, fit in laws["_fits"].items():
        _, _, xlabel = AXES[law]
        ylabel = laws["laws"][law]["y"]
        paths[law] = plot_fit(fit, out / f"law_{law}.png", xlabel, ylabel, f"{law} law: {fit.form}")
    if laws["batch"]:
        paths["batch_shapes"] = plot_batch(laws["batch"], out / "batch_shapes.png")
    return paths
