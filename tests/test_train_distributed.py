"""Real 2-rank DeepSpeed runs over gloo on the shipped tiny target: every ZeRO stage learns, resume is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_train, short_run_overrides, train_command

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


def test_killed_and_resumed_run_matches_uninterrupted(small_corpus: Path, tmp_path: Path) -> None:
    steps, save_every = 40, 8
    common = [f"train.save_every={save_every}", "draft.feature_noise=0.05", "deepspeed=zero2"]
    whole = tmp_path / "whole"
    run_train([*short_run_overrides(small_corpus, whole, steps), *common])

    broken = tmp_path / "broken"
    cmd = train_command([*short_run_overrides(small_corpus, broken, steps), *common])
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    marker = broken / "checkpoints" / "step_00000016" / "manifest.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole launcher + both ranks, as a node failure would
    proc.wait()
    assert proc.returncode != 0, "the run finished before it could be killed; the test proved nothing"
    assert not (broken / "export").exists()

    run_train([*short_run_overrides(small_corpus, broken, steps), *common, "resume=true"])
    a, b = metrics(whole), metrics(broken)
    for step in range(1, steps + 1):
        assert a[step]["train/loss"] == pytest.approx(b[step]["train/loss"], rel=1e-6, abs=1e-7), step
    wa = load_file(str(whole / "export" / "model.safetensors"))
    wb = load_file(str(broken / "export" / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-6, atol=1e-7, msg=name)


def test_new_run_refuses_a_directory_with_checkpoints(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "once"
    run_train([*short_run_overrides(small_corpus, out, steps=2), "deepspeed=none"], nproc=1)
    proc = run_train(
        [*short_run_overrides(small_corpus, out, steps=2), "deepspeed=none"], nproc=1, check=False
    )
    assert proc.returncode != 0 and "resume=true" in proc.stderr
