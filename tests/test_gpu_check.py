"""launch/gpu_check.py's own logic, on CPU: the dry run lists every step and runs nothing, a machine without
CUDA is refused in one line, a run (--allow-cpu) reports each GPU test's skip reason, and the budget stops a
step that outlasts it and skips the next."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.readme_blocks import section_commands, shell_env

SCRIPT = REPO / "launch" / "gpu_check.py"
DOC = REPO / "docs" / "gpu-check.md"
STEPS = ("install", "flash-attn", "gpu-tests", "packed-chats-bench", "vllm-install", "vllm-serve")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what the script does without CUDA")


def gpu_check_module():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_dry_run_lists_every_step_and_runs_nothing(tmp_path: Path) -> None:
    command = section_commands("## Run it", DOC)[0]  # docs/gpu-check.md's line, run as printed
    assert command == "python launch/gpu_check.py --dry-run"
    proc = subprocess.run(
        ["bash", "-c", f"{command} --out {tmp_path / 'gc'}"], cwd=REPO, env=shell_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = [line[2:].split(" (")[0] for line in proc.stdout.splitlines() if line.startswith("- ")]
    assert tuple(listed) == STEPS
    assert "-m gpu tests/test_gpu.py" in proc.stdout and "bench_chat_batching.py" in proc.stdout
    assert "DRAFTFORGE_VLLM_PYTHON=" in proc.stdout
    assert not (tmp_path / "gc").exists()


@no_cuda
def test_without_cuda_a_run_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run("--out", str(tmp_path / "gc"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no CUDA device here" in proc.stderr


@no_cuda
def test_gpu_tests_step_reports_each_skip_reason(tmp_path: Path) -> None:
    out = tmp_path / "gc"
    proc = run("--allow-cpu", "--only", "gpu-tests", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (step,) = json.loads((out / "report.json").read_text())["steps"]
    assert step["name"] == "gpu-tests" and step["status"] == "skipped"
    names = {t["test"].split("::")[-1].split("[")[0] for t in step["tests"]}
    assert {"test_bf16_training_step_on_cuda", "test_nccl_process_group_and_collectives"} <= names
    assert all(t["status"] == "skipped" and "no CUDA device" in t["why"] for t in step["tests"])
    assert "| gpu-tests | skipped |" in (out / "report.md").read_text()


def test_budget_stops_a_step_and_skips_the_next(tmp_path: Path) -> None:
    gc = gpu_check_module()
    slow = gc.Step("slow", "sleeps", [sys.executable, "-c", "import time; time.sleep(60)"], 60)
    after = gc.Step("after", "never starts", [sys.executable, "-c", "pass"], 30)
    (tmp_path / "logs").mkdir()
    first = gc.run_step(slow, 6, tmp_path / "logs")
    assert first.status == "timeout" and 5 < first.seconds < 30
    second = gc.run_step(after, 6 - first.seconds, tmp_path / "logs")
    assert second.status == "skipped" and second.detail.startswith("budget:")
    failing = gc.Step(
        "install", "fails", [sys.executable, "-c", "raise SystemExit('no wheel')"], 30, optional=True
    )
    third = gc.run_step(failing, 60, tmp_path / "logs")
    assert third.status == "skipped" and "no wheel" in third.detail
