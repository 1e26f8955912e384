"""What an eval run leaves behind: a printed table, results.{json,csv}, outputs.jsonl, PNGs, logger entries.

The text table is drawn here (`_grid`), not by a table library: none is a dependency (pandas, tabulate and
rich are not), and one that was would change nothing a user reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.intervals import fmt_interval
from eval.metrics import CI_NOTE, SPEED_NOTE, TAU_NOTE, Metrics

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
OUTPUTS_JSONL = "outputs.jsonl"
PLOTS = {
    "acceptance_png": "acceptance_by_position.png",
    "category_png": "tau_by_category.png",
    "batch_png": "batch_size.png",
}
SWEEP_KEYS = ("tau", "tau_ci95", "acceptance_at_1", "spec_tokens_per_s", "baseline_tokens_per_s", "speedup",
              "speedup_ci95", "speedup_cost_model", "speedup_ceiling", "draft_ms", "verify_ms", "baseline_step_ms")  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):  # a [lo, hi] interval
        return fmt_interval(value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _grid(rows: list[str], cols: list[str], cell) -> list[str]:
    width = max(len(n) for n in rows) + 2
    text = {(r, c): _fmt(cell(r, c)) for r in rows for c in cols}
    col = max(10, *(len(c) + 2 for c in cols), *(len(t) + 2 for t in text.values()))
    lines = ["".ljust(width) + "".join(c.rjust(col) for c in cols), "-" * (width + col * len(cols))]
    return lines + [r.ljust(width) + "".join(text[r, c].rjust(col) for c in cols) for r in rows]


def flat_row(row: Metrics) -> dict[str, Any]:
    """A metrics row for flat sinks (CSV, logger): each [lo, hi] interval becomes two columns _lo and _hi."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k.endswith("_ci95"):
            out[f"{k}_lo"], out[f"{k}_hi"] = (None, None) if v is None else v
        else:
            out[k] = v
    return out


def format_table(
    metrics: dict[str, Metrics], by_bs: dict[int, dict[str, Metrics]], header: dict[str, Any]
) -> str:
    """Metrics down the side, scopes (all, then each category) across; then one column per batch size."""
    lines = [f"{k}: {v}" for k, v in header.items()] + [TAU_NOTE, SPEED_NOTE, CI_NOTE, ""]
    scopes = list(metrics)
    lines += _grid(list(metrics["all"]), scopes, lambda r, c: metrics[c].get(r))
    if len(by_bs) > 1:
        lines += ["", "by batch size (all prompts):"]
        cols = [f"batch={b}" for b in by_bs]
        lines += _grid(list(SWEEP_KEYS), cols, lambda r, c: by_bs[int(c.split("=")[1])]["all"].get(r))
    return "\n".join(lines)


def _figure():
    fig = Figure(figsize=(6.4, 4.0), dpi=100)  # Figure + Agg: no pyplot global state
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def plot_acceptance(metrics: dict[str, Metrics], positions: int, path: Path) -> Path:
    fig, ax = _figure()
    scopes = list(metrics)
    bar = 0.8 / len(scopes)
    xs = list(range(1, positions + 1))
    for j, scope in enumerate(scopes):
        vals = [metrics[scope].get(f"acceptance_at_{i}") or 0.0 for i in xs]
        ax.bar(
            [x - 0.4 + bar * (j + 0.5) for x in xs],
            vals,
            width=bar,
            label=f"{scope} (tau {_fmt(metrics[scope]['tau'])})",
        )
    ax.set_xticks(xs)
    ax.set_xlabel("draft depth i")
    ax.set_ylabel("P(accept at i | reached i)")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Acceptance by draft position")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_categories(metrics: dict[str, Metrics], path: Path) -> Path:
    fig, ax = _figure()
    scopes = list(metrics)
    taus = [metrics[s]["tau"] or 0.0 for s in scopes]
    cis = [metrics[s].get("tau_ci95") or [t, t] for s, t in zip(scopes, taus, strict=True)]
    err = [
        [t - c[0] for t, c in zip(taus, cis, strict=True)],
        [c[1] - t for t, c in zip(taus, cis, strict=True)],
    ]
    ax.bar(scopes, taus, yerr=err, capsize=3, color=["gray"] + ["C0"] * (len(scopes) - 1))
    ax.set_ylabel("tau (tokens per target forward, bonus counted; bars: 95 % interval)")
    ax.set_title("tau by task category")
    ax.tick_params(axis="x", labelrotation=30, labelsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_one_batch_size(batch: int, m: Metrics, path: Path) -> Path:
    """One batch size has no trend to draw: two bars (speculative, target alone) with tau in the title."""
    fig, ax = _figure()
    names = ["speculative", "target alone"]
    values = [m["spec_tokens_per_s"] or 0, m["baseline_tokens_per_s"] or 0]
    bars = ax.bar(names, values, color=["C0", "gray"])
    ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize="small")
    ax.set_ylabel("tokens/s")
    ax.set_title(f"Throughput at batch size {batch} (tau {_fmt(m['tau'])})")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_batch_sizes(by_bs: dict[int, dict[str, Metrics]], path: Path) -> Path:
    sizes = list(by_bs)
    if len(sizes) == 1:  # a line through one point reads as a trend that was never measured
        return _plot_one_batch_size(sizes[0], by_bs[sizes[0]]["all"], path)
    fig, ax = _figure()
    ax.plot(sizes, [by_bs[b]["all"]["spec_tokens_per_s"] or 0 for b in sizes], "o-", label="speculative")
    ax.plot(
        sizes, [by_bs[b]["all"]["baseline_tokens_per_s"] or 0 for b in sizes], "s--", label="target alone"
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("tokens/s")
    ax2 = ax.twinx()
    ax2.plot(sizes, [by_bs[b]["all"]["tau"] or 0 for b in sizes], "^:", color="C3", label="tau")
    ax2.set_ylabel("tau")
    ax.legend(loc="upper left", fontsize="small")
    ax2.legend(loc="lower right", fontsize="small")
    ax.set_title("Throughput and tau vs batch size")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_all(
    metrics: dict[str, Metrics], by_bs: dict[int, dict[str, Metrics]], positions: int, out: Path
) -> dict[str, Path]:
    return {
        "acceptance_png": plot_acceptance(metrics, positions, out / PLOTS["acceptance_png"]),
        "category_png": plot_categories(metrics, out / PLOTS["category_png"]),
        "batch_png": plot_batch_sizes(by_bs, out / PLOTS["batch_png"]),
    }


def write_results(
    out_dir: Path, metrics: dict[str, Metrics], by_bs: dict[int, dict[str, Metrics]], info: dict[str, Any]
) -> tuple[Path, Path]:
    json_path = out_dir / RESULTS_JSON
    payload = {"metrics": metrics, "by_batch_size": {str(b): m for b, m in by_bs.items()},
               "notes": {"tau": TAU_NOTE, "speed": SPEED_NOTE, "intervals": CI_NOTE}, **info}  # fmt: skip
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    csv_path = out_dir / RESULTS_CSV
    names = list(flat_row(metrics["all"]))
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["batch_size", "scope", *names])
        for bs, scopes in by_bs.items():
            for scope, row in scopes.items():
                flat = flat_row(row)
                writer.writerow([bs, scope, *("" if flat.get(n) is None else flat.get(n) for n in names)])
    return json_path, csv_path


def write_outputs(out_dir: Path, records: list[dict[str, Any]]) -> Path:
    path = out_dir / OUTPUTS_JSONL
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def log_results(
    logger: Any,
    metrics: dict[str, Metrics],
    by_bs: dict[int, dict[str, Metrics]],
    plots: dict[str, Path],
    records: list[dict],
) -> None:
    """Summary numbers as eval/<scope>/<metric> and eval/batch_<b>/<metric>, tables, and the plots."""
    flat = {
        f"eval/{scope}/{k}": v
        for scope, row in metrics.items()
        for k, v in flat_row(row).items()
        if v is not None
    }
    flat.update(
        {
            f"eval/batch_{b}/{k}": v
            for b, m in by_bs.items()
            for k, v in flat_row(m["all"]).items()
            if v is not None
        }
    )
    logger.summary(flat)
    # W&B types each table column by its first row and refuses a row that differs (a number, then a "[lo, hi]"
    # text): every interval is logged as two numeric rows/columns, _lo and _hi, as in results.csv.
    scopes = {s: flat_row(m) for s, m in metrics.items()}
    logger.log_table(
        "eval/metrics",
        ["metric", *scopes],
        [[n, *(scopes[s].get(n) for s in scopes)] for n in scopes["all"]],
    )
    sweep_cols = list(flat_row(dict.fromkeys(SWEEP_KEYS)))
    logger.log_table(
        "eval/batch_sizes",
        ["batch_size", *sweep_cols],
        [[b, *(flat_row(m["all"]).get(k) for k in sweep_cols)] for b, m in by_bs.items()],
    )
    columns = [
        "id",
        "category",
        "batch_size",
        "new_tokens",
        "verify_forwards",
        "accepted_lengths",
        "lossless",
        "text",
    ]
    rows = [[r["id"], r["category"], r["batch_size"], len(r["output_token_ids"]), len(r["accepted_lengths"]),
             json.dumps(r["accepted_lengths"]), r["lossless"], r["text"]] for r in records]  # fmt: skip
    logger.log_table("eval/outputs", columns, rows)
    for key, path in plots.items():
        logger.log_image(f"eval/{key.removesuffix('_png')}", path)
