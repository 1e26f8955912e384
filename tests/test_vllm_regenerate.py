"""`python -m data regenerate --backend vllm` (real vLLM in its own environment): greedy answers equal the HF
backend's, same format, and a killed run resumes. Skipped, saying why, without a vLLM python."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from data.regenerate import VLLM_ENV_VAR, run_regenerate
from tests.test_data_regenerate import job, prompts_file

VLLM_PYTHON = os.environ.get(VLLM_ENV_VAR, "")
pytestmark = pytest.mark.skipif(
    not (VLLM_PYTHON and Path(VLLM_PYTHON).is_file()),
    reason=f"no vLLM environment: set {VLLM_ENV_VAR} to its python (docs/serving.md 'Serving engines (vLLM)')",
)


def test_vllm_backend_writes_what_hf_generate_writes_and_resumes(tmp_path: Path) -> None:
    src = prompts_file(tmp_path)
    greedy = dataclasses.replace(job(src, tmp_path / "hf.jsonl"), temperature=0.0)
    run_regenerate(greedy)
    hf = (tmp_path / "hf.jsonl").read_text().splitlines(keepends=True)
    out = tmp_path / "vllm.jsonl"
    # Killed after writing one answer, mid-way through the second. The planted row is a marked copy, so it can
    # only survive as resumed output, never be compared with HF's as if vLLM had written it.
    planted = {**json.loads(hf[0]), "resumed_marker": True}
    Path(str(out) + ".partial").write_text(json.dumps(planted) + "\n" + hf[1][:20])
    stats = run_regenerate(dataclasses.replace(greedy, out=str(out), backend="vllm"))
    assert stats["generated"] == len(hf) - 1 and stats["backend"] == "vllm" and stats["new_tokens"] > 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0] == planted  # resume kept the finished row as written
    # Every other row is vLLM's own answer: greedy on both backends, the same answers in the same format.
    for i, (want, have) in enumerate(zip(hf[1:], got[1:], strict=True), start=1):
        assert have == json.loads(want), f"row {i}: vLLM's greedy answer differs from HF generate's"
