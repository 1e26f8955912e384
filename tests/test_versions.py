"""Declared versions are true: pyproject's transformers floor is the one the import check enforces, and an
older transformers stops `python -m train` with one line and exit 2 (a real interpreter whose metadata
reports 4.57.6, from a dist-info placed ahead of the installed one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from data.paths import REPO_ROOT
from data.versions import TRANSFORMERS_MIN, transformers_problem


def test_pyproject_declares_the_floor_the_code_enforces() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert re.findall(r'"transformers>=([^",]+)"', pyproject) == [TRANSFORMERS_MIN]


def test_only_releases_below_the_floor_are_refused() -> None:
    assert transformers_problem("4.57.6") is not None
    assert transformers_problem("5.0.0rc1") is not None
    assert transformers_problem(TRANSFORMERS_MIN) is None
    assert transformers_problem("5.25.0") is None
    assert "not installed" in transformers_problem(None)


def test_an_older_transformers_stops_the_entry_point_with_one_line(tmp_path: Path) -> None:
    info = tmp_path / "transformers-4.57.6.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 4.57.6\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}
    for module in ("train", "eval", "data"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, (module, proc.stderr[-2000:])
        assert proc.stderr.strip().splitlines() == [
            f"error: draftforge needs transformers>={TRANSFORMERS_MIN}, found 4.57.6 (4.x ignores "
            f"`rope_parameters`, so rotary settings would be silently wrong): "
            f"pip install 'transformers>={TRANSFORMERS_MIN}'"
        ], module
