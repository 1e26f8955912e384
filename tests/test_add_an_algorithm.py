"""Adding an algorithm is one new folder and no edit elsewhere. In a copy of the repository (the real tree stays
untouched), docs/adding-an-algorithm.md's commands run as printed: they write the toy algorithm
(tests/toy_algorithm.py) as `train/drafts/toy/`, compose `draft=toy` and train it two steps, export it in its own
format, re-import it and evaluate it with real speculative decoding, through the ordinary entry points."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO
from tests.readme_blocks import DOCS, section_commands, shell_env
from tests.toy_algorithm import FOLDER

# What the copy leaves out: history, outputs and caches (none is read by the pipeline).
SKIP = shutil.ignore_patterns(
    ".git", "outputs", "multirun", ".cache", ".venv", "__pycache__", "wandb", "*.pyc"
)


def test_a_new_folder_is_a_new_algorithm(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=SKIP)
    env = {**shell_env(), "PYTHONPATH": str(repo)}  # the copy's packages, not this checkout's
    commands = section_commands("## Try it: the toy algorithm", DOCS / "adding-an-algorithm.md")
    assert len(commands) == 5 and commands[0] == "python -m tests.toy_algorithm", commands
    for command in commands:
        # Each line takes well under a minute on quiet cores; the limit only catches a hang (shared cores at
        # load 25 stretched one 2-step training past 10 minutes).
        proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=1800)  # fmt: skip
        assert proc.returncode == 0, f"{command}\nexited {proc.returncode}\n{proc.stderr[-3000:]}"
    assert sorted(p.name for p in (repo / FOLDER).iterdir() if p.suffix == ".py") == sorted(
        ["__init__.py", "config.py", "head.py", "objective.py", "drafter.py", "export.py"]
    )
    out = repo / "outputs" / "toy"
    assert json.loads((out / "export" / "config.json").read_text())["head"]["architecture"] == "toy"
    assert json.loads((out / "served" / "config.json").read_text())["toy_format"] == 1
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["draft"]["meta"]["architecture"] == "toy"
    assert results["lossless"] is True  # every output token for token the target's own greedy output
    assert results["metrics"]["all"]["tau"] >= 1.0  # tokens per target forward, the bonus token counted
    assert not (REPO / FOLDER).exists()  # the real tree was not touched
