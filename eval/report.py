"""What an eval run leaves behind: a printed table, results.{json,csv}, outputs.jsonl, a PNG, logger entries."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.metrics import SPEED_NOTE, TAU_NOTE

Metrics = dict[str, dict[str, float | int | None]]

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
OUTPUTS_JSONL = "outputs.jsonl"
ACCEPTANCE_PNG = "acceptance_by_position.png"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def format_table(metrics: Metrics, header: dict[str, Any]) -> str:
    """Metrics down the side, scopes (all, then each category) across."""
    scopes = list(metrics)
    names = list(metrics[scopes[0]])
    width = max(len(n) for n in names) + 2
    col = max(12, *(len(s) + 2 for s in scopes))
    lines = [f"{k}: {v}" for k, v in header.items()]
    lines += [TAU_NOTE, SPEED_NOTE, ""]
    lines.append("metric".ljust(width) + "".join(s.rjust(col) for s in scopes))
    lines.append("-" * (width + col * len(scopes)))
    for name in names:
        lines.append(name.ljust(width) + "".join(_fmt(metrics[s].get(name)).rjust(col) for s in scopes))
    return "\n".join(lines)


def plot_acceptance(metrics: Metrics, draft_length: int, path: Path) -> Path:
    """Grouped bars: P(accept position i | reached i) for each scope. Figure + Agg, so no pyplot state."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    scopes = list(metrics)
    bar = 0.8 / len(scopes)
    positions = list(range(1, draft_length + 1))
    for j, scope in enumerate(scopes):
        vals = [metrics[scope].get(f"acceptance_at_{i}") or 0.0 for i in positions]
        ax.bar(
            [p - 0.4 + bar * (j + 0.5) for p in positions],
            vals,
            width=bar,
            label=f"{scope} (tau {_fmt(metrics[scope]['tau'])})",
        )
    ax.set_xticks(positions)
    ax.set_xlabel("draft position i")
    ax.set_ylabel("P(accept i | reached i)")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Acceptance by draft position (temperature 0)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_results(out_dir: Path, metrics: Metrics, info: dict[str, Any]) -> tuple[Path, Path]:
    json_path = out_dir / RESULTS_JSON
    payload = {"metrics": metrics, "notes": {"tau": TAU_NOTE, "speed": SPEED_NOTE}, **info}
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    csv_path = out_dir / RESULTS_CSV
    names = list(next(iter(metrics.values())))
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scope", *names])
        for scope, row in metrics.items():
            writer.writerow([scope, *("" if row.get(n) is None else row.get(n) for n in names)])
    return json_path, csv_path


def write_outputs(out_dir: Path, records: list[dict[str, Any]]) -> Path:
    path = out_dir / OUTPUTS_JSONL
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def log_results(logger: Any, metrics: Metrics, png: Path, records: list[dict[str, Any]]) -> None:
    """Summary numbers as eval/<scope>/<metric>, the metric table, a per-prompt table and the plot."""
    flat = {f"eval/{scope}/{k}": v for scope, row in metrics.items() for k, v in row.items() if v is not None}
    logger.summary(flat)
    names = list(next(iter(metrics.values())))
    logger.log_table(
        "eval/metrics", ["metric", *metrics], [[n, *(metrics[s].get(n) for s in metrics)] for n in names]
    )
    columns = ["id", "category", "new_tokens", "verify_forwards", "accepted_lengths", "lossless", "text"]
    rows = [[r["id"], r["category"], len(r["output_token_ids"]), len(r["accepted_lengths"]),
             json.dumps(r["accepted_lengths"]), r["lossless"], r["text"]] for r in records]  # fmt: skip
    logger.log_table("eval/outputs", columns, rows)
    logger.log_image("eval/acceptance_by_position", png)
