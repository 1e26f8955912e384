"""Launch entry points in dry-run mode: each prints the exact command or sbatch script and runs nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def dry_run(script: str, *args: str, **env: str) -> str:
    proc = subprocess.run(
        ["bash", f"launch/{script}", *args],
        cwd=REPO,
        env={**os.environ, "DRY_RUN": "1", "NPROC": "2", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_torchrun_single_and_multi_node() -> None:
    one = dry_run("train_torchrun.sh", "run_name=r", "deepspeed=zero2")
    assert "--standalone --nproc-per-node 2" in one and one.strip().endswith(
        "-m train run_name=r deepspeed=zero2"
    )
    assert "SIGUSR1" in one  # torchrun forwards the scheduler's warning signal to the ranks
    many = dry_run("train_torchrun.sh", "run_name=r", NNODES="2", MASTER_ADDR="node-1")
    assert "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint node-1:29500" in many


def test_deepspeed_launcher_with_hostfile() -> None:
    out = dry_run("train_deepspeed.sh", "run_name=r", HOSTFILE="launch/hostfile.example")
    assert out.startswith(
        "deepspeed --no_local_rank --hostfile launch/hostfile.example --master_addr node-001"
    )
    assert "--num_gpus 2" in dry_run("train_deepspeed.sh")


def test_sbatch_template() -> None:
    out = dry_run("train.sbatch", "run_name=r")
    assert out.startswith("srun --kill-on-bad-exit=1") and "-m train run_name=r" in out
    text = (REPO / "launch" / "train.sbatch").read_text()
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@120" in text


def test_hydra_slurm_launcher_script() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    missing = [cmd for cmd in ("srun", "sbatch") if shutil.which(cmd) is None]
    if missing:  # submitit's AutoExecutor looks for srun even to print a script: a laptop has no SLURM
        pytest.skip(f"{' and '.join(missing)} not on PATH: SLURM is not installed here")
    proc = subprocess.run(
        [sys.executable, "launch/slurm_dry_run.py", "hydra.launcher.tasks_per_node=2", "run_name=r"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for line in ("#SBATCH --ntasks-per-node=2", "#SBATCH --requeue", "#SBATCH --signal=USR2@120"):
        assert line in proc.stdout
    assert "multirun/r/.submitit" in proc.stdout  # the same run_name-derived folders on every rank
