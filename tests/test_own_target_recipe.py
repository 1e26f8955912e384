"""Done-means of issue 16: a recipe runs on a target the repo does not ship with ONE override.

`python -m train.pipeline experiment=scylla-tiny target.name_or_path=<folder>` regenerates that target's
answers, builds the draft vocabulary with its tokenizer, trains three stages, and evaluates against the target
the export records. The only other input is DRAFTFORGE_BUDGET_SCALE (documented in
conf/experiment/base/tiny.yaml), which scales the recipe's budgets down to a smoke run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from data.fingerprint import tokenizer_fingerprint
from data.paths import REPO_ROOT, target_key
from data.target_io import load_tokenizer
from tests.own_target import build_bpe_target
from tests.readme_blocks import DOCS, section_commands, shell_env

pytestmark = pytest.mark.integration


def test_scylla_tiny_runs_on_an_unshipped_bpe_target_with_one_override(tmp_path: Path) -> None:
    """The docs' line on a target the repo does not ship, with its own 3,000-token byte-level BPE to which
    AutoTokenizer adds a default unk one past the embedding (issue 22 item 6: it used to be refused at the
    first step). One pipeline run covers both claims: it takes one override, and such a tokenizer trains.
    (That a tokenizer.json read differently from the file warns is tests/test_own_target.py's.)"""
    target = build_bpe_target(tmp_path / "my-bpe-target")
    regenerated = REPO_ROOT / "outputs" / "regenerated" / f"{target_key(str(target), None)}-dialogues.jsonl"
    # The docs' line, as printed; only MY_TARGET (which it names) and the budget scale are set.
    command = section_commands("### Your own target, by one override", DOCS / "recipes.md")[0]
    assert command == "python -m train.pipeline experiment=scylla-tiny target.name_or_path=$MY_TARGET"
    env = {**shell_env(DRAFTFORGE_BUDGET_SCALE="0.01"), "MY_TARGET": str(target)}
    try:
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=2700)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert regenerated.is_file()  # keyed by this target: never the shipped tiny-llama's answers
    finally:
        regenerated.unlink(missing_ok=True)
    assert "UnreachableTokenWarning" in proc.stderr and "can never emit it" in proc.stderr
    root = tmp_path / "outputs" / "experiments" / "scylla-tiny"
    want = tokenizer_fingerprint(load_tokenizer(str(target), warn=False))
    for stage in ("pretrain", "sft", "distill"):
        meta = json.loads((root / stage / "export" / "config.json").read_text())["meta"]
        assert (meta["target"], meta["tokenizer"], meta["tokenizer_fingerprint"]) == (
            str(target),
            str(target),
            want,
        )
    results = json.loads((root / "eval" / "results.json").read_text())
    # Eval ran against the recorded target and tokenizer, not conf/eval.yaml's default tiny-llama.
    assert (results["target"]["target"], results["target"]["tokenizer_fingerprint"]) == (str(target), want)
    assert results["lossless"] is True
    print(f"tau on the unshipped target: {results['metrics']['all']['tau']}")
