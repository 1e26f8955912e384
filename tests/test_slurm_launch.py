"""On a real SLURM cluster (CI starts a single-node one with /work/shared/tools/local-slurm/setup.sh, see
.ci/run): a 2-task job submitted through `hydra/launcher=slurm` is signalled, saves, requeues itself once,
resumes and ends with the uninterrupted run's weights; a 2-job Hydra sweep runs through the same launcher.
Skipped, saying why, where there is no SLURM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests import test_resilience_elastic as elastic
from tests.conftest import REPO, short_run_overrides
from tests.test_resilience_resume import logged_since, metrics, overrides, reference_run


def _no_slurm_reason() -> str | None:
    if not shutil.which("sbatch"):
        return "no sbatch on PATH: SLURM is not installed here (CI starts one: local-slurm/setup.sh)"
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set: no SLURM cluster configured for this session"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher is not installed (pip install -e '.[slurm]')"
    try:
        alive = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        alive = False
    return None if alive else "sinfo failed: the SLURM daemons are not running"


REASON = _no_slurm_reason()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def _submit(args: list[str], sweep: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m train -m hydra/launcher=slurm ...`: Hydra submits and then waits for the job(s)."""
    cmd = [
        sys.executable, "-m", "train", "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep}",
        "hydra.launcher.timeout_min=30", *args,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _job_logs(sweep: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(sweep.rglob("*_log.*")))


def _run(*cmd: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"({' '.join(cmd)}: {err})"
    return (proc.stdout + proc.stderr).strip()


def _queue() -> dict[str, str]:
    """Job id -> state (PENDING, RUNNING, ...) of every job in the queue."""
    rows = (line.split() for line in _run("squeue", "-h", "-o", "%i %T").splitlines())
    return {row[0]: row[1] for row in rows if len(row) == 2}


def _slurm_says() -> str:
    """What SLURM knows about why a job does not run: the queue with reasons, the accounting states and the
    tails of the controller's and the node daemon's logs (when this user can read them)."""
    parts = [
        "squeue: " + (_run("squeue", "-h", "-o", "%i %T %r %j") or "(empty)"),
        "sinfo: " + _run("sinfo", "-h", "-o", "%N %T %C %E"),
        "sacct: " + _run("sacct", "-n", "-X", "-o", "JobID,JobName%30,State,ExitCode,Reason%30"),
        # Records of earlier clusters that reused these job ids: submitit would read their states as ours.
        "sacct --duplicates: "
        + _run("sacct", "-n", "-X", "--duplicates", "-S", "2000-01-01", "-o", "JobID,State,Submit"),
    ]
    config = _run("scontrol", "show", "config").splitlines()
    for daemon in ("SlurmctldLogFile", "SlurmdLogFile"):  # the controller's and the node daemon's
        log = next((line.split("=", 1)[1].strip() for line in config if line.startswith(daemon)), "")
        try:
            tail = Path(log).read_text(errors="replace").splitlines()[-30:]
            parts.append(f"{log} (tail):\n" + "\n".join(tail))
        except OSError as err:
            parts.append(f"{daemon} not readable ({log or 'not configured'}: {err})")
    return "\n".join(parts)


def _wait_running(proc: subprocess.Popen, before: set[str], timeout_s: float) -> list[str]:
    """The ids of the running job(s) Hydra submitted (not in `before`); fails, with what SLURM said, if none
    runs in time."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the launcher exited before its job ran:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        running = [job for job, state in _queue().items() if state == "RUNNING" and job not in before]
        if running:
            return running
        time.sleep(0.5)
    pytest.fail(f"the submitted job did not start within {timeout_s:.0f} s. SLURM says:\n{_slurm_says()}")


def test_signalled_job_requeues_once_resumes_and_matches_uninterrupted(
    small_corpus: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ref = reference_run(tmp_path_factory, small_corpus)
    out, sweep = tmp_path / "run", tmp_path / "sweep"
    slow = {"DRAFTFORGE_TEST_FAULTS": json.dumps({"step_sleep": 0.3})}  # time to signal mid-run
    before = set(_queue())
    proc = _submit(["hydra.launcher.tasks_per_node=2", *overrides(small_corpus, out)], sweep, slow)
    job: list[str] = []  # set once the job runs, so the clean-up below never meets an unbound name
    try:
        # A 2-task job waits for any earlier job to free the CPUs: wait for it to start, then for step 3.
        job = _wait_running(proc, before, timeout_s=300)
        assert len(job) == 1, job
        deadline = time.time() + 300
        while logged_since(out, 0) < 3:
            if proc.poll() is not None:  # everything SLURM and the job said: a one-off cannot be rerun
                said = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"the launcher exited before step 3:\n{said[-3000:]}\njob logs:\n"
                            f"{_job_logs(sweep)[-3000:]}\nSLURM says:\n{_slurm_says()}")  # fmt: skip
            assert time.time() < deadline, f"the job did not reach step 3. SLURM says:\n{_slurm_says()}"
            time.sleep(0.2)
        subprocess.run(["scancel", "--signal=USR1", job[0]], check=True)
        stdout, _ = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
            # Whatever this submission left queued, whether or not it ever ran.
            subprocess.run(["scancel", *(job or [j for j in _queue() if j not in before])], check=False)
    logs = _job_logs(sweep)
    assert proc.returncode == 0, stdout[-3000:] + logs[-3000:]
    assert logs.count("got SIGUSR1: saving at the next step boundary") == 2, logs[-3000:]  # both tasks
    assert logs.count("[preempt] requeued SLURM job") == 1, logs[-3000:]
    assert "SLURM_RESTART_COUNT=1: resuming" in logs, logs[-3000:]
    assert "resumed from" in logs
    a, b = metrics(ref), metrics(out)
    for step in a:
        assert a[step]["train/loss"] == b[step]["train/loss"], step
    wa = load_file(str(ref / "export" / "model.safetensors"))
    wb = load_file(str(out / "export" / "model.safetensors"))
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_two_job_sweep_runs_through_the_slurm_launcher(small_corpus: Path, tmp_path: Path) -> None:
    base = [
        o for o in short_run_overrides(small_corpus, tmp_path, steps=2) if not o.startswith("output_dir=")
    ]
    args = [*base, "deepspeed=none", "run_name=sweep-a,sweep-b", f"output_dir={tmp_path}/runs/${{run_name}}"]
    proc = _submit(args, tmp_path / "sweep")
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout[-3000:] + _job_logs(tmp_path / "sweep")[-3000:]
    for name in ("sweep-a", "sweep-b"):
        assert (tmp_path / "runs" / name / "export" / "model.safetensors").is_file(), name


# The local cluster has one node, and a requeued job keeps the task count of its submission, so SLURM cannot
# bring this job back on fewer nodes here. This wrapper plays that part around the real launch/train.sbatch:
# the restart gets 1 rank per node where the first run had 2, as `sbatch --nodes=2-4` may restart on 2 of 4.
# Each start records the blocks its ranks read in files of its own (ROWS-<restart>-rank<r>.jsonl).
SHRINKING_JOB = """#!/usr/bin/env bash
restart=${SLURM_RESTART_COUNT:-0}
export NPROC=$(( restart > 0 ? 1 : 2 ))
export DRAFTFORGE_TEST_FAULTS="{\\"step_sleep\\": %s, \\"record_rows\\": \\"$ROWS-$restart\\"}"
exec bash launch/train.sbatch "$@"
"""


def test_requeued_sbatch_job_comes_back_smaller_and_continues_the_run(
    small_corpus: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ref = elastic.reference(tmp_path_factory, small_corpus)
    out, script = tmp_path / "run", tmp_path / "shrinking.sbatch"
    script.write_text(SHRINKING_JOB % elastic.SLOW)
    args = elastic.elastic_overrides(small_corpus, out, 2)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the job's `python` is this one
        "OMP_NUM_THREADS": "1",
        "ROWS": str(tmp_path / "rows"),
    }
    sbatch = [
        "sbatch", "--parsable", "--requeue", "--open-mode=append", f"--output={tmp_path}/job.out",
        "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--time=30", str(script), *args,
    ]  # fmt: skip
    job = subprocess.run(sbatch, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
    job = job.split(";")[0]
    try:
        deadline = time.time() + 300
        while logged_since(out, 0) < 3:
            assert time.time() < deadline, f"the job did not reach step 3. SLURM says:\n{_slurm_says()}"
            time.sleep(0.2)
        # What SLURM sends before a preemption or the time limit (--signal=B:USR1): to the batch shell.
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
        deadline = time.time() + 420
        while job in _queue():
            assert time.time() < deadline, f"the job did not finish. SLURM says:\n{_slurm_says()}"
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job], check=False)
    log = (tmp_path / "job.out").read_text(errors="replace")
    assert log.count("[preempt] requeued SLURM job") == 1, log[-4000:]
    assert "SLURM_RESTART_COUNT=1: resuming" in log, log[-4000:]
    assert "[resume] 2 -> 1 rank(s)" in log and "global batch 8 kept" in log, log[-4000:]
    assert "[sbatch] srun exited 0" in log, log[-4000:]
    a, b = metrics(ref), metrics(out)
    assert sorted(b) == sorted(a)
    for step in a:
        la, lb = a[step]["train/loss"], b[step]["train/loss"]
        assert abs(la - lb) <= elastic.TOLERANCE * abs(la), (step, la, lb)
    planned = elastic.rows_by_step([[ref.parent / f"rows-ref-rank{r}.jsonl" for r in range(2)]])
    seen = elastic.rows_by_step(
        [[tmp_path / f"rows-{n}-rank{r}.jsonl" for r in range(2 - n)] for n in (0, 1)]
    )
    assert seen == planned
