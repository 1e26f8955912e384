"""One greedy comparison with real vLLM, shared by the single-algorithm engine tests (DFlash, P-EAGLE): the
target alone and the speculative run in one worker, batch 1; vLLM's speculative outputs must equal its plain
ones and ours, and its counters ours per prompt and position. Returns vLLM's counters for further checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.vllm_backend import compare
from eval.vllm_backend.runner import run_vllm


def vllm_counts_equal_ours(
    python: str, target: Path, ids: list[str], prompts: list[list[int]], ours: list[dict], spec: dict[str, Any],
    k: int, new_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    job = {"target": str(target.resolve()), "prompts": prompts, "batch_sizes": [1], "max_new_tokens": new_tokens,
           "temperature": 0.0, "top_p": 1.0, "seed": 0,
           "runs": [{"name": "plain", "speculative_config": None}, {"name": "spec", "speculative_config": spec}]}  # fmt: skip
    result = run_vllm(python, job, timeout_s=1200)["runs"]
    assert "error" not in result["spec"], result["spec"]
    checks = compare.Checks()
    compare.check_greedy(ids, {1: ours}, result, k, checks)
    assert not checks.failures, json.dumps(checks.failures, indent=1)
    return result["spec"]["by_bs"]["1"]["counters"]
