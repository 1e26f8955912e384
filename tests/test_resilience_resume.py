"""Exact resume through kill -9 (mid-step and mid-save), SIGUSR1 to one rank, and damaged checkpoints.

One uninterrupted 2-rank reference run (shared with the SLURM tests) against one run that is broken four
times and relaunched until it finishes; losses, final weights and optimizer state must match exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_train, short_run_overrides, train_command

pytestmark = pytest.mark.integration

STEPS, SAVE_EVERY = 16, 4
EXIT_PREEMPTED = 75  # train/preemption.py


def overrides(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        *short_run_overrides(corpus, out, STEPS),
        f"train.save_every={SAVE_EVERY}",
        "train.keep_checkpoints=10",
        "draft.feature_noise=0.05",  # draws from the per-rank RNG, so resume must restore it
        "deepspeed=zero2",
        *extra,
    ]


_REFERENCE: dict[str, Path] = {}


def reference_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """The uninterrupted run, made once per session."""
    if "ref" not in _REFERENCE:
        out = tmp_path_factory.mktemp("reference") / "run"
        run_train(overrides(corpus, out))
        _REFERENCE["ref"] = out
    return _REFERENCE["ref"]


def metrics(run_dir: Path) -> dict[int, dict]:
    """Last record per step (a resumed run re-logs the steps after its checkpoint)."""
    out: dict[int, dict] = {}
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        rec = json.loads(line)
        out[rec["step"]] = rec
    return out


def logged_since(run_dir: Path, lines: int) -> int:
    """The highest step logged after the first `lines` records (this launch's progress only)."""
    path = run_dir / "metrics.jsonl"
    recs = path.read_text().splitlines()[lines:] if path.is_file() else []
    return max((json.loads(r)["step"] for r in recs if r.endswith("}")), default=0)


def n_records(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Two `python -m train` processes wired by environment alone (as srun launches tasks): no torchrun in
    between, so each rank's own exit code and reaction to a dead peer are what the test sees."""
    port = str(free_port())
    procs = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for r in range(2):
        rank_env = {
            **os.environ,
            **(env or {}),
            "RANK": str(r),
            "LOCAL_RANK": str(r),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "train", *args],
                cwd=REPO,
                env=rank_env,
                stdout=open(log_dir / f"rank{r}.out", "w"),  # noqa: SIM115 - closed with the process
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def wait_until(cond, timeout: float = 240.0, procs: list[subprocess.Popen] | None = None) -> None:
    deadline = time.time() + timeout
    while not cond():
        if procs and any(p.poll() is not None for p in procs):
            raise AssertionError("a process ended before the condition was reached")
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def descendants(pid: int) -> list[int]:
    """torchrun starts each worker in a session of its own, so killing its process group misses them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def launch_and_kill(args: list[str], when, env: dict[str, str] | None = None) -> None:
    """torchrun + both ranks killed with SIGKILL at once, as a node failure would."""
    proc = subprocess.Popen(
        train_command(args),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        wait_until(when, procs=[proc])
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def kill_seed() -> int:
    """The seed of a test's random kill points: DRAFTFORGE_KILL_SEED=<n> replays a run, else it comes from the
    clock. Printed, so a failing run's output (pytest shows it) says how to replay it."""
    seed = int(os.environ.get("DRAFTFORGE_KILL_SEED") or time.time_ns() % 2**31)
    print(f"[kill points] seed {seed}: DRAFTFORGE_KILL_SEED={seed} replays them", flush=True)
    return seed


def optimizer_states(ckpt: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(ckpt.glob("zero_pp_rank_*_optim_states.pt")):
        sd = torch.load(f, map_location="cpu", weights_only=False)["optimizer_state_dict"]
        for i, flat in enumerate(sd["single_partition_of_fp32_groups"]):
            out[f"{f.name}/fp32/{i}"] = flat
        for i, st in sd["base_optimizer_state"]["state"].items():
            for k, v in st.items():
                out[f"{f.name}/{i}/{k}"] = torch.as_tensor(v)
    return out


def test_broken_run_relaunched_until_done_matches_uninterrupted(
    small_corpus: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ref = reference_run(tmp_path_factory, small_corpus)
    out = tmp_path / "broken"
    args = overrides(small_corpus, out, "resume=true")
    rng = random.Random(kill_seed())
    ckpts = out / "checkpoints"

    # 1. kill -9 in the middle of the first save (held open by the test-only save_sleep fault).
    hold = {"DRAFTFORGE_TEST_FAULTS": json.dumps({"save_sleep": {"rank": 0, "step": 4, "seconds": 60}})}
    launch_and_kill(args, lambda: (ckpts / "step_00000004.tmp" / "rank1.pt").exists(), hold)
    assert not (ckpts / "step_00000004").exists()

    # 2. kill -9 at a random step after the first good checkpoint (the leftover .tmp is cleaned first).
    k, n0 = rng.randint(5, 7), n_records(out)
    launch_and_kill(args, lambda: logged_since(out, n0) >= k)
    assert not list(ckpts.glob("*.tmp")), "the interrupted save's folder was not cleaned"
    assert (ckpts / "step_00000004" / "manifest.json").is_file()

    # 3. SIGUSR1 to rank 1 only, at a random step: both ranks save the same step and exit 75.
    s, n0 = rng.randint(9, 11), n_records(out)
    slow = {"DRAFTFORGE_TEST_FAULTS": json.dumps({"step_sleep": 0.3})}  # time to signal mid-run
    procs = spawn_ranks(args, tmp_path / "usr1", slow)
    wait_until(lambda: logged_since(out, n0) >= s, procs=procs)
    procs[1].send_signal(signal.SIGUSR1)
    time.sleep(0.1)
    procs[1].send_signal(signal.SIGUSR1)  # a second signal while stopping is not fatal
    codes = [p.wait(timeout=120) for p in procs]
    logs = [(tmp_path / "usr1" / f"rank{r}.out").read_text() for r in range(2)]
    assert codes == [EXIT_PREEMPTED, EXIT_PREEMPTED], (codes, logs[0][-3000:], logs[1][-3000:])
    saved = [int(line.split("checkpoint saved at step ")[1].split(";")[0]) for line in
             (next(x for x in log.splitlines() if "checkpoint saved at step" in x) for log in logs)]  # fmt: skip
    assert saved[0] == saved[1] and saved[0] >= s, saved
    stopped = ckpts / f"step_{saved[0]:08d}"
    assert (stopped / "manifest.json").is_file()
    assert "got SIGUSR1 again" in logs[1]

    # 4. Damage the newest checkpoint (flip one byte) and leave a stray temporary folder: the relaunch
    #    names the damage, resumes from the previous good checkpoint and cleans up.
    victim = stopped / "rank1.pt"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    (ckpts / "step_00000099.tmp").mkdir()
    (ckpts / "step_00000099.tmp" / "partial.pt").write_bytes(b"x")
    proc = run_train(args)
    text = proc.stdout + proc.stderr
    assert f"skipping {stopped}: rank1.pt: sha256 differs" in text, text[-3000:]
    assert "step_00000099.tmp: leftover of an interrupted save" in text
    assert "resumed from" in text and "step_00000008" in text

    # The finished run equals the uninterrupted one: losses step for step, weights, optimizer state.
    a, b = metrics(ref), metrics(out)
    assert sorted(b) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert a[step]["train/loss"] == b[step]["train/loss"], step
    wa = load_file(str(ref / "export" / "model.safetensors"))
    wb = load_file(str(out / "export" / "model.safetensors"))
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    final = f"step_{STEPS:08d}"
    oa, ob = optimizer_states(ref / "checkpoints" / final), optimizer_states(ckpts / final)
    assert oa.keys() == ob.keys() and oa
    for key in oa:
        assert torch.equal(oa[key], ob[key]), key
