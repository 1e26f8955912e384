"""The batch-size analysis reads what `python -m eval` writes (results.json over batch_sizes) and names the
best decoding shape per batch size."""

from __future__ import annotations

from pathlib import Path

from eval.laws.batch import format_batch_table, main, rows_from_eval_dirs
from eval.report import write_results


def _eval_dir(root: Path, name: str, speedups: dict[int, float], tau: float) -> Path:
    out = root / name
    out.mkdir(parents=True)
    by_bs = {b: {"all": {"tau": tau, "speedup": s, "draft_ms": 1.0, "verify_ms": 2.0 * b,
                         "baseline_step_ms": 1.5}} for b, s in speedups.items()}  # fmt: skip
    write_results(out, by_bs[min(by_bs)], by_bs, {})
    return out


def test_best_shape_per_batch_from_eval_outputs(tmp_path: Path, capsys) -> None:
    big = _eval_dir(tmp_path, "big", {1: 2.0, 8: 1.4, 64: 0.7}, tau=3.2)
    small = _eval_dir(tmp_path, "small", {1: 1.5, 8: 1.5, 64: 1.1}, tau=2.1)
    rows = rows_from_eval_dirs({"tree-s32": big, "tree-s4": small})
    assert [(r["batch_size"], r["best_shape"]) for r in rows] == [
        (1, "tree-s32"),
        (8, "tree-s4"),
        (64, "tree-s4"),
    ]
    assert rows[0]["baseline_step_ms"] == 1.5
    assert "best" in format_batch_table(rows)
    main([f"tree-s32={big}", f"tree-s4={small}"])
    out = capsys.readouterr().out
    assert "2.00 (3.20)" in out and out.rstrip().endswith("tree-s4")
