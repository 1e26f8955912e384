"""`python -m train` builds and checks its data before it loads the target: a bad record fails the run
without a multi-GB load (here: a target whose weights file is garbage, which a load would trip over)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TINY_LLAMA


def test_bad_data_fails_before_the_target_is_loaded(tmp_path: Path) -> None:
    target = tmp_path / "target"
    shutil.copytree(TINY_LLAMA, target)
    (target / "model.safetensors").write_bytes(b"not a safetensors file")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": "no text field here"}) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "train", f"target.name_or_path={target}", f"data.train_files=[{bad}]",
         "data.valid_files=[]", "deepspeed=none", "logger=none", f"output_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "bad.jsonl:1: no 'text' field" in proc.stderr
    assert "Traceback" not in proc.stderr and "safetensors" not in proc.stderr
