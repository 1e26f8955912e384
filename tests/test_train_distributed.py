"""Real 2-rank DeepSpeed runs over gloo on the shipped tiny target: every ZeRO stage learns, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import run_train, short_run_overrides

pytestmark = pytest.mark.integration


def metrics(run_dir: Path) -> dict[int, dict]:
    """Last record per step (a resumed run re-logs the steps after its checkpoint)."""
    out: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec
    return out


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_two_rank_pretraining_lowers_loss(zero: int, small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / f"zero{zero}"
    extra = ["logger=wandb", f"logger.dir={tmp_path / 'wandb'}"] if zero == 1 else []
    run_train([*short_run_overrides(small_corpus, out, steps=16), f"deepspeed=zero{zero}", *extra])
    m = metrics(out)
    first = sum(m[s]["train/loss"] for s in (1, 2, 3)) / 3
    last = sum(m[s]["train/loss"] for s in (14, 15, 16)) / 3
    assert last < 0.9 * first, f"ZeRO-{zero}: loss {first:.4f} -> {last:.4f}"
    export = load_file(str(out / "export" / "model.safetensors"))
    assert export["fc.weight"].shape[1] == 2 * export["fc.weight"].shape[0]  # gathered, not a ZeRO shard
    assert (out / "checkpoints" / "step_00000016" / "manifest.json").is_file()
    if zero == 1:  # W&B offline run files were written with the metrics
        runs = list((tmp_path / "wandb").rglob("offline-run-*"))
        assert runs and any(p.suffix == ".wandb" for p in runs[0].rglob("*"))


def test_deepspeed_launcher_runs_the_same_entry_point(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    proc = run_train([*short_run_overrides(small_corpus, out, steps=3)], launcher="deepspeed")
    assert "2 rank(s)" in proc.stdout + proc.stderr
    assert (out / "export" / "model.safetensors").is_file()


def test_new_run_refuses_a_directory_with_checkpoints(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "once"
    run_train([*short_run_overrides(small_corpus, out, steps=2), "deepspeed=none"], nproc=1)
    proc = run_train(
        [*short_run_overrides(small_corpus, out, steps=2), "deepspeed=none"], nproc=1, check=False
    )
    assert proc.returncode != 0 and "resume=true" in proc.stderr
