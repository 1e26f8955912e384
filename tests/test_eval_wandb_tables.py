"""Eval's results go into a real (offline) W&B run: summary numbers, both tables and a plot.

W&B types each table column by its first row and raises on a later row of another type, which is how the
main job's eval once died after a 10-minute training run (a tau row of numbers, then a "[lo, hi]" text row).
The metrics here mix what a real report holds: intervals, an interval that could not be computed (None, one
prompt in the category), numbers and ints."""

from __future__ import annotations

import json
from pathlib import Path

from data.tracking import LoggerConfig, make_logger
from eval.report import SWEEP_KEYS, log_results, plot_acceptance


def _row(tau: float, ci: list[float] | None) -> dict:
    return {"tau": tau, "tau_ci95": ci, "speedup": 0.9, "speedup_ci95": [0.8, 1.0], "prompts": 3}


def test_log_results_writes_every_table_to_an_offline_wandb_run(tmp_path: Path) -> None:
    metrics = {"all": _row(2.5, [2.1, 2.9]), "code": _row(3.0, None), "qa": _row(2.0, [1.5, 2.6])}
    by_bs = {1: {"all": {k: 1.0 for k in SWEEP_KEYS} | {"tau_ci95": [2.0, 3.0], "speedup_ci95": None}},
             4: {"all": {k: 2.0 for k in SWEEP_KEYS} | {"tau_ci95": None, "speedup_ci95": [0.5, 0.7]}}}  # fmt: skip
    acc = {s: {"tau": 2.0, "acceptance_at_1": 0.5, "acceptance_at_2": 0.25} for s in metrics}
    plot = plot_acceptance(acc, 2, tmp_path / "acc.png")
    records = [{"id": "p0", "category": "code", "batch_size": 1, "output_token_ids": [1, 2],
                "accepted_lengths": [1, 0], "lossless": True, "text": "x"}]  # fmt: skip
    logger = make_logger(
        LoggerConfig(mode="offline", dir=str(tmp_path / "wandb")), tmp_path, {}, is_main=True
    )
    try:
        log_results(logger, metrics, by_bs, {"acceptance_png": plot}, records)
    finally:
        logger.finish()
    media = tmp_path / "wandb"
    tables = {p.name.split("_")[0]: json.loads(p.read_text()) for p in media.rglob("*.table.json")}
    assert set(tables) == {"metrics", "batch", "outputs"}, sorted(tables)
    rows = {r[0]: r[1:] for r in tables["metrics"]["data"]}
    assert tables["metrics"]["columns"] == ["metric", "all", "code", "qa"]
    assert rows["tau_ci95_lo"] == [2.1, None, 1.5] and rows["tau_ci95_hi"] == [2.9, None, 2.6]
    batch = tables["batch"]
    lo = batch["columns"].index("tau_ci95_lo")
    assert [r[lo] for r in batch["data"]] == [2.0, None]
    assert list(media.rglob("*.png")), "the plot was logged"
