"""Adding an algorithm is one new folder and no edit elsewhere: a toy algorithm (tests/toy_algorithm.py) is
written as `train/drafts/toy/` into a copy of the repository, and there it composes (Hydra's draft=toy), trains
two steps, exports in its own format, re-imports and evals with real speculative decoding (lossless), all
through the ordinary entry points. The copy keeps the real tree untouched while the test runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests import toy_algorithm
from tests.conftest import REPO, TINY_LLAMA, short_run_overrides

# What the copy leaves out: history, outputs and caches (none is read by the pipeline).
SKIP = shutil.ignore_patterns(
    ".git", "outputs", "multirun", ".cache", ".venv", "__pycache__", "wandb", "*.pyc"
)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the copy's packages, not the installed checkout's
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd[:4])} exited {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def test_a_new_folder_is_a_new_algorithm(small_corpus: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=SKIP)
    folder = repo / toy_algorithm.FOLDER
    folder.mkdir()
    for name, text in toy_algorithm.FILES.items():
        (folder / name).write_text(text)
    py = sys.executable

    listed = _run([py, "-c", "from train.drafts.registry import SPECS; print(sorted(SPECS))"], repo).stdout
    assert "'toy'" in listed and "'toy-wide'" in listed, listed  # the folder and its alias, found

    out = tmp_path / "run"
    overrides = [*short_run_overrides(small_corpus, out, steps=2), "draft=toy", "deepspeed=none"]
    _run([py, "-m", "train", *overrides], repo)
    config = json.loads((out / "export" / "config.json").read_text())
    assert config["head"]["architecture"] == "toy"

    served, back = tmp_path / "served", tmp_path / "back"
    _run(
        [py, "-m", "train.export", "--draft", str(out / "export"), "--format", "toy", "--out", str(served)],
        repo,
    )
    assert json.loads((served / "config.json").read_text())["toy_format"] == 1
    _run([py, "-m", "train.export", "--import", "--draft", str(served), "--out", str(back),
          "--target", str(TINY_LLAMA)], repo)  # fmt: skip

    report = tmp_path / "eval"
    _run([py, "-m", "eval", f"draft_path={back}", f"target.name_or_path={TINY_LLAMA}", "prompts.num_prompts=2",
          "max_new_tokens=12", "mode=chain", "logger=none", "progress=false", f"output_dir={report}"], repo)  # fmt: skip
    results = json.loads((report / "results.json").read_text())
    assert results["draft"]["meta"]["architecture"] == "toy"
    assert results["lossless"] is True  # every output token-for-token the target's own greedy output
    assert results["metrics"]["all"]["tau"] >= 1.0  # tokens per target forward, the bonus token counted
