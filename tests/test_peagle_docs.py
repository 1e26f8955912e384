"""docs/peagle.md's "Run it" lines run as printed: P-EAGLE trains two steps in pretrain, SFT and distill (each
stage from the previous export, through DeepSpeed), exports in the layout vLLM loads, re-imports and decodes
losslessly in our engine. Run in a scratch folder (outputs/ lands there) that sees the repository's data/."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from data.paths import REPO_ROOT
from tests.readme_blocks import DOCS, section_commands, shell_env


def test_peagle_lines_run_as_printed(tmp_path: Path) -> None:
    commands = section_commands("## Run it", DOCS / "peagle.md")
    stages = [c.split("stage=")[1].split()[0] for c in commands if "stage=" in c]
    assert stages == ["pretrain", "sft", "distill"] and len(commands) == 6, commands
    (tmp_path / "data").symlink_to(REPO_ROOT / "data")  # the printed --target path, relative to the root
    env = shell_env()
    for command in commands:
        # well under a minute each on quiet cores; the limit only catches a hang on loaded shared ones
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)  # fmt: skip
        assert proc.returncode == 0, f"{command}\nexited {proc.returncode}\n{proc.stderr[-3000:]}"
    out = tmp_path / "outputs"
    for stage in ("pretrain", "sft", "distill"):
        cfg = json.loads((out / f"peagle-{stage}" / "export" / "config.json").read_text())
        assert cfg["head"]["architecture"] == "peagle" and cfg["head"]["parallel_tokens"] == 4, stage
    served = json.loads((out / "peagle-served" / "config.json").read_text())
    assert served["speculators_model_type"] == "peagle" and "mask_token_id" in served
    assert json.loads((out / "peagle-back" / "config.json").read_text())["head"]["architecture"] == "peagle"
    results = json.loads((out / "peagle-eval" / "results.json").read_text())
    assert results["lossless"] is True and results["metrics"]["all"]["draft_ms"] > 0
