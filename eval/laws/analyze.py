"""From a sweep's results table to the laws (tokens, capacity, batch size; block size for a block drafter
such as DFlash), the joint law, the per-position acceptance fits, the hold-out check and the cost tables the
planner reads (laws.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eval.intervals import fmt_interval
from eval.laws.batch import batch_table
from eval.laws.fit import Fit, best_form, compare_forms, fit_form
from eval.laws.forms import FORMS
from eval.laws.joint import fit_joint
from eval.laws.records import FLOPS_FORMULA
from eval.laws.warmup import find_warmup

# law name -> (records axis, x field, x label)
AXES = {
    "tokens": ("tokens", "tokens_seen", "pretraining target tokens T"),
    "capacity": ("depth", "trainable_params", "draft trainable parameters P"),
    "batch": ("batch", "batch_size", "decoding batch size B"),
    # A block drafter's width: tokens drafted per forward (the last accepted token + block - 1 mask slots).
    "block": ("block", "block_size", "block size (tokens per draft forward)"),
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


def point_cis(records: list[dict[str, Any]], axis: str, x_field: str, y_path: str, x: np.ndarray) -> list:
    """The 95 % interval each point of `points` was measured with (its eval's `<metric>_ci95`; None where
    the record predates intervals), in the order of x."""
    by_x = {float(r[x_field]): metric(r, f"{y_path}_ci95") for r in records if r["axis"] == axis}
    return [by_x.get(float(v)) for v in x]


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
            "relative_error": float(err), "within_5pct": bool(abs(err) <= 0.05),
            "within_10pct": bool(abs(err) <= 0.10)}  # fmt: skip


def fit_laws(
    records: list[dict[str, Any]],
    y_path: str = "t0/tree/tau",
    n_boot: int = 1000,
    min_tokens: float | None = None,
) -> dict[str, Any]:
    """Tokens-axis budgets in a warm-up are left out of every fit (the tokens, joint and per-position laws and
    the hold-out), as scaling-law fits leave out runs too short to be in the law's regime. Where the warm-up
    ends is decided by the rule in eval/laws/warmup.py (fixed before looking at any slope), unless
    `min_tokens` is given: then budgets below it are left out instead and the report says it overrode the
    rule. The rule's finding, the cut used and the budgets left out are written to laws.json and printed."""
    rule = find_warmup(*points(records, "tokens", "tokens_seen", y_path), n_boot=n_boot)
    cut = rule.cut() if min_tokens is None else min_tokens
    # The break sits on a grid in ln T: a budget equal to it (up to rounding) is in the law's regime.
    early = [r for r in records if r["axis"] == "tokens" and r["tokens_seen"] < cut * (1 - 1e-9)]
    warmup = sorted({r["tokens_seen"] for r in early})
    records = [r for r in records if not any(r is e for e in early)]
    out: dict[str, Any] = {"metric": y_path, "flops_formula": FLOPS_FORMULA, "laws": {}, "fits": {},
                           "warmup_rule": rule.to_json(), "warmup_cut_by": "rule" if min_tokens is None else
                           "--min-tokens", "min_tokens": cut, "warmup_budgets_excluded": warmup}  # fmt: skip
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
                            "y_ci95": point_cis(records, axis, x_field, y_of, x),
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
    # Draft cost per step in the decoding shape the laws fit (a block drafter has chains only).
    shape = y_path.rpartition("/")[0]
    ref = [r for r in records if r["axis"] in ("tokens", "depth") and r["batch_size"] == 1]
    out["draft_ms_by_depth"] = {str(r["depth"]): metric(r, f"{shape}/draft_ms") for r in ref}
    out["block_costs"] = block_costs(records, shape)
    any_rec = next(iter(records), {})
    out["target_params"] = any_rec.get("target_params")
    out["ttt_steps"] = any_rec.get("ttt_steps")
    # tau <= deepest verified draft token + 1 (the bonus): the number of acceptance positions reported.
    depths = [sum(k.startswith("acceptance_at_") for k in r["results"].get(shape, {})) for r in records]
    out["max_tau"] = 1 + max(depths, default=0) if any(depths) else None
    out["batch"] = batch_table(records)
    out["_fits"] = fits  # dropped before writing; plots use them
    return out


def block_costs(records: list[dict[str, Any]], shape: str) -> list[dict[str, Any]]:
    """Per block size on the block axis: tau, slot-1 acceptance, draft and verify milliseconds per step and
    speed-up (what building wider costs beside what it buys), in block order."""
    rows = sorted((r for r in records if r["axis"] == "block"), key=lambda r: r["block_size"])
    keys = ("tau", "acceptance_at_1", "draft_ms", "verify_ms", "speedup")
    return [{"block_size": r["block_size"], "depth": r["depth"], **{k: metric(r, f"{shape}/{k}") for k in keys}}
            for r in rows]  # fmt: skip


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


def cost_lines(law: str, laws: dict[str, Any]) -> list[str]:
    """What each step of the capacity and block axes costs beside what it buys: layers -> parameters and draft
    ms per step; per block size, tau, slot-1 acceptance, draft and verify ms per step and the speed-up."""
    if law == "capacity":
        ms = laws.get("draft_ms_by_depth", {})
        by_depth = sorted(laws.get("capacity_map", {}).items(), key=lambda kv: int(kv[0]))
        return [
            f"  depth {d}: {p:,.0f} trainable parameters, draft {_num(ms.get(d))} ms per step"
            for d, p in by_depth
        ]
    if law == "block":
        return [f"  block {r['block_size']} (depth {r['depth']}): tau {_num(r['tau'])}, acceptance at slot 1 "
                f"{_num(r['acceptance_at_1'])}, draft {_num(r['draft_ms'])} ms / verify {_num(r['verify_ms'])} ms "
                f"per step, speed-up {_num(r['speedup'])}" for r in laws.get("block_costs", [])]  # fmt: skip
    return []


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _params(entry: dict[str, Any]) -> str:
    """ "b=0.531 [0.463, 0.634] t[0.418, 0.647]": estimate, bootstrap interval, Student-t interval."""
    t = entry.get("t_ci95", {})
    return ", ".join(
        f"{k}={v:.4g} {fmt_interval(entry['ci95'][k])} t{fmt_interval(t.get(k))}"
        for k, v in entry["params"].items()
    )


def warmup_lines(laws: dict[str, Any]) -> list[str]:
    rule = laws.get("warmup_rule")
    lines = []
    if rule:
        found = "warm-up found" if rule["detected"] else "no warm-up"
        where = ""
        if rule["break_tokens"]:
            lo, hi = rule["ci95"]
            where = (
                f"; break at {rule['break_tokens']:,.0f} tokens [{lo:,.0f}, {hi:,.0f}] (95 % residual "
                f"bootstrap), slope {rule['slope_before']:.3g} before, {rule['slope_after']:.3g} after"
            )
        lines.append(
            f"warm-up rule (two-regime fit vs ln T, fixed before looking): {found}: {rule['reason']}{where}"
        )
    if laws.get("warmup_cut_by") == "--min-tokens":
        lines.append(f"--min-tokens {laws['min_tokens']:,.0f} overrides the warm-up rule")
    left = ", ".join(f"{t:,.0f}" for t in laws.get("warmup_budgets_excluded", []))
    if left:
        lines.append(f"tokens budgets below {laws['min_tokens']:,.0f} left out as warm-up: {left}")
    return lines


def summary_lines(laws: dict[str, Any]) -> list[str]:
    lines = [f"metric: {laws['metric']} (tau = tokens per target forward, bonus counted)"]
    lines.append(
        "intervals: [bootstrap 95 %] t[Student-t 95 %]; on few points the t-interval is the honest one"
    )
    lines += warmup_lines(laws)
    for law, entry in laws["laws"].items():
        if "skipped" in entry:
            lines.append(f"{law}: skipped ({entry['skipped']})")
            continue
        lines.append(f"{law} law ({entry['y']} vs {entry['x']}), best by leave-one-out: {entry['best']}")
        x, y = entry["forms"][entry["best"]]["x"], entry["forms"][entry["best"]]["y"]
        cis = entry.get("y_ci95") or [None] * len(x)
        lines.append(
            "  points: "
            + "; ".join(f"{a:,.0f} -> {b:.4g} {fmt_interval(c)}" for a, b, c in zip(x, y, cis, strict=True))
        )
        for name in FORMS.keys() - entry["forms"].keys():
            lines.append(f"  {name:15s} not fitted (too few distinct points, or the solver did not converge)")
        for name, f in entry["forms"].items():
            lines.append(
                f"  {name:15s} {f['formula']:24s} R^2={f['r2']:.3f} LOO-RMSE={f['loo_rmse']:.4g}  {_params(f)}"
            )
        lines += cost_lines(law, laws)
    j = laws.get("joint")
    if j and "params" in j:
        lines.append(
            f"joint law tau = {j['formula']}: R^2={j['r2']:.3f} LOO-RMSE={j['loo_rmse']:.4g}  {_params(j)}"
        )
    elif j:
        lines.append(f"joint law: skipped ({j['skipped']})")
    h = laws.get("holdout_largest_budget")
    if h:
        verdict = ", ".join(
            f"{'within' if h[f'within_{p}pct'] else 'NOT within'} {p} %"
            for p in (5, 10)
            if f"within_{p}pct" in h
        )
        lines.append(f"hold-out: fit on all budgets but the largest predicts tau {h['predicted']:.3f} "
                     f"[{h['ci95'][0]:.3f}, {h['ci95'][1]:.3f}] at T={h['x']:.0f}; measured {h['measured']:.3f} "
                     f"({100 * h['relative_error']:+.1f} %, {verdict})")  # fmt: skip
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
