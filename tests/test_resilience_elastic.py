"""Elastic resume under kill -9: a run on 2 ranks is killed at a random moment, resumed on 1 rank, killed
again, resumed on 2 ranks and finished, under ZeRO-1, ZeRO-2 and ZeRO-3 (train/reshard.py).

The same command line serves every world size (`train.global_batch_size`: accumulation 1 on 2 ranks, 2 on
one), as a requeued SLURM job's would. Checked against one uninterrupted 2-rank run:
- every step's training loss within TOLERANCE (the resumed state is the same; only the order in which
  floating-point sums are taken differs between 2 ranks x 1 micro-batch and 1 rank x 2 micro-batches);
- every step read exactly the planned blocks (recorded per micro-batch by the test-only `record_rows` hook).

The kill points are drawn from a seed printed at the start (shown with a failure); DRAFTFORGE_KILL_SEED=<n>
replays them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, run_train, short_run_overrides, train_command
from tests.test_resilience_resume import descendants, kill_seed, logged_since, metrics, n_records, wait_until

pytestmark = pytest.mark.integration

STEPS, SAVE_EVERY, GLOBAL_BATCH = 14, 2, 8
TOLERANCE = 1e-4  # relative difference of a step's loss from the uninterrupted run's
SLOW = 0.1  # seconds of test-only sleep after each step, so a kill lands mid-run


def elastic_overrides(corpus: Path, out: Path, stage: int) -> list[str]:
    return [
        *short_run_overrides(corpus, out, STEPS),  # micro-batch 4
        f"train.save_every={SAVE_EVERY}",
        "train.keep_checkpoints=10",
        f"train.global_batch_size={GLOBAL_BATCH}",
        f"deepspeed=zero{stage}",
    ]


def faults(prefix: Path) -> dict[str, str]:
    return {"DRAFTFORGE_TEST_FAULTS": json.dumps({"record_rows": str(prefix), "step_sleep": SLOW})}


_REFERENCE: dict[str, Path] = {}


def reference(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """The uninterrupted 2-rank run (ZeRO-2), made once per session; its rows are the planned order."""
    if "ref" not in _REFERENCE:
        out = tmp_path_factory.mktemp("elastic-reference") / "run"
        env = {"DRAFTFORGE_TEST_FAULTS": json.dumps({"record_rows": str(out.parent / "rows-ref")})}
        run_train(elastic_overrides(corpus, out, 2), env=env)
        _REFERENCE["ref"] = out
    return _REFERENCE["ref"]


def launch(args: list[str], nproc: int, log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        train_command(args, nproc),
        cwd=REPO,
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def kill9(proc: subprocess.Popen) -> None:
    """Every process of the launch at once, as a node failure would."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def newest_checkpoint(out: Path) -> int:
    """The step of the newest published checkpoint (a `.tmp` folder a kill left behind does not count)."""
    root = out / "checkpoints"
    done = [
        int(p.name[5:])
        for p in root.glob("step_*")
        if p.name[5:].isdigit() and (p / "manifest.json").is_file()
    ]
    return max(done, default=0)


def rows_by_step(files: list[list[Path]]) -> dict[int, Counter]:
    """Step -> the blocks it read, from the last launch that ran it (a killed launch's steps after its last
    checkpoint are run again by the next one). `files`: per launch, its ranks' record files."""
    out: dict[int, Counter] = {}
    for launch_files in files:
        mine: dict[int, Counter] = {}
        for f in launch_files:
            for line in f.read_text().splitlines() if f.is_file() else []:
                if line.endswith("}"):  # a kill may cut the last line
                    rec = json.loads(line)
                    mine.setdefault(rec["step"], Counter()).update(rec["rows"])
        out.update(mine)
    return out


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_kill9_on_2_ranks_resume_on_1_kill_resume_on_2(
    stage: int, small_corpus: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seed = kill_seed()
    rng = random.Random(seed)
    ref = reference(tmp_path_factory, small_corpus)
    out = tmp_path / "run"
    args = [*elastic_overrides(small_corpus, out, stage), "resume=true"]
    why = f"(DRAFTFORGE_KILL_SEED={seed} replays this)"
    files: list[list[Path]] = []
    logs: list[str] = []

    # Launch 1: 2 ranks, kill -9 at a random moment after the first checkpoint.
    # Launch 2: 1 rank, kill -9 at a random moment after it saved a checkpoint of its own.
    # Launch 3: 2 ranks, to the end.
    for n, nproc in enumerate((2, 1, 2)):
        log, prefix = tmp_path / f"launch{n}.log", tmp_path / f"rows-{n}"
        files.append([Path(f"{prefix}-rank{r}.jsonl") for r in range(nproc)])
        start, n0 = newest_checkpoint(out), n_records(out)
        proc = launch(args, nproc, log, faults(prefix))
        if n < 2:
            # Past the next save, so this launch leaves a checkpoint of its own world size.
            k = start + SAVE_EVERY + rng.randint(1, 2)
            try:
                wait_until(lambda k=k, n0=n0: logged_since(out, n0) >= k, procs=[proc])
                time.sleep(rng.uniform(0, 2 * SLOW))  # anywhere in the next step or save
            finally:
                kill9(proc)
            assert not (out / "export").exists(), f"launch {n} finished before the kill {why}"
        else:
            assert proc.wait(timeout=600) == 0, log.read_text()[-3000:] + why
        logs.append(log.read_text())

    assert "[resume] 2 -> 1 rank(s)" in logs[1] and f"global batch {GLOBAL_BATCH} kept" in logs[1], (
        logs[1][-3000:] + why
    )
    assert "[resume] 1 -> 2 rank(s)" in logs[2], logs[2][-3000:] + why

    # The loss continues the uninterrupted curve, right after each resume and at every other step.
    a, b = metrics(ref), metrics(out)
    assert sorted(b) == list(range(1, STEPS + 1)), why
    for step in range(1, STEPS + 1):
        la, lb = a[step]["train/loss"], b[step]["train/loss"]
        assert abs(la - lb) <= TOLERANCE * abs(la), f"step {step}: loss {lb} vs uninterrupted {la} {why}"
        assert a[step]["train/lr"] == pytest.approx(b[step]["train/lr"], rel=1e-12), f"step {step} {why}"
        assert a[step]["train/tokens_seen"] == b[step]["train/tokens_seen"], f"step {step} {why}"

    # Every step read exactly the blocks the uninterrupted run read in that step.
    planned = rows_by_step([[ref.parent / f"rows-ref-rank{r}.jsonl" for r in range(2)]])
    seen = rows_by_step(files)
    assert sorted(planned) == sorted(seen) == list(range(1, STEPS + 1)), why
    for step in planned:
        assert seen[step] == planned[step], f"step {step}: read {seen[step]}, planned {planned[step]} {why}"
