"""A 3-point sweep end to end through Hydra's multirun launcher: one tiny pretraining run shared by the
points, eval at three batch sizes, complete records in one table; a rerun skips every finished point, and a
lost record is rebuilt from the saved eval results without retraining."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.laws.records import REQUIRED, missing_fields, read_table
from tests.conftest import REPO, TINY_LLAMA

pytestmark = pytest.mark.integration


def _sweep(root: Path, corpus: Path) -> subprocess.CompletedProcess:
    train = [
        "stage=pretrain", f"target.name_or_path={TINY_LLAMA}", f"data.train_files=[{corpus}]", "data.seq_len=64",
        "train.micro_batch_size=4", "train.progress=false", "train.eval_every=0", "deepspeed=none",
        "optim.warmup_steps=1", "logger=none",
    ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "eval.laws.point", "-m", "name=t3", f"output_root={root}", "axis=batch",
        "nproc=1", "tokens=512", "tracking=none", "eval.batch_size=1,2,4",
        "train=[" + ",".join(f'"{o}"' for o in train) + "]",
        "eval.temperatures=[0.0]", "eval.modes=[chain]", "eval.tree_budgets=[2]",
        'eval.overrides=["prompts.num_prompts=4","max_new_tokens=6","cpu_threads=1"]',
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_three_point_multirun_writes_complete_resumable_records(tmp_path: Path, small_corpus: Path) -> None:
    root = tmp_path / "sweep"
    _sweep(root, small_corpus)
    rows = read_table(root)
    assert sorted(r["batch_size"] for r in rows) == [1, 2, 4]
    for r in rows:
        assert missing_fields(r) == [], r
        assert set(REQUIRED) <= set(r)
        assert set(r["results"]) == {"t0/chain", "t0/tree-s2"}
        assert 1.0 <= r["results"]["t0/chain"]["tau"] <= 5.0
        lo, hi = r["results"]["t0/chain"]["tau_ci95"]  # the eval's interval travels into the record
        assert lo <= r["results"]["t0/chain"]["tau"] <= hi
        assert r["tokens_seen"] >= 512 and r["trainable_params"] > 0
        assert r["train_flops"] == 6 * r["trainable_params"] * r["tokens_seen"] * r["ttt_steps"] + (
            2 * r["target_params"] * r["tokens_seen"]
        )
    assert len({r["train_key"] for r in rows}) == 1  # the three points share one training run
    csv_lines = (root / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and "t0/chain/tau" in csv_lines[0] and "t0/chain/tau_ci95" in csv_lines[0]

    export = next((root / "train").iterdir()) / "export" / "model.safetensors"
    mtime = export.stat().st_mtime_ns
    lost = rows[1]
    (root / "points" / lost["point_id"] / "record.json").unlink()
    table = root / "results.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows if r["point_id"] != lost["point_id"]))

    proc = _sweep(root, small_corpus)
    assert proc.stdout.count("finished earlier, skipping") == 2
    assert "training ->" not in proc.stdout and "eval t0" not in proc.stdout  # nothing recomputed
    assert export.stat().st_mtime_ns == mtime
    again = read_table(root)
    assert sorted(r["point_id"] for r in again) == sorted(r["point_id"] for r in rows)
    rebuilt = next(r for r in again if r["point_id"] == lost["point_id"])
    assert rebuilt["results"] == lost["results"]
