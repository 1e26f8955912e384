"""Real vLLM takes the schedule `python -m eval.plan ... --engine vllm` writes: its own validator expands it
to the k our schedule means at every batch size, and it serves a tiny export with it, losslessly, drafting
the scheduled k (its own counters) at batch 1 and fewer at batch 8.

Skipped, saying why, without a vLLM python (DRAFTFORGE_VLLM_PYTHON), as tests/test_vllm_engine.py is. Two vLLM builds (the target alone and the schedule) on 8 prompts x 8
new tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from eval.laws.schedule import FIELD, k_at
from eval.laws.schedule_vllm import job, rows
from eval.plan import main as plan_main
from eval.vllm_backend.run import prepare
from eval.vllm_backend.runner import ENV_VAR, run_vllm, worker_env
from tests.conftest import TINY_LLAMA
from tests.engine_heads import decode_prompts
from tests.test_laws_schedule import vllm_laws
from tests.test_vllm_engine import our_export
from train.modeling.target import FrozenTarget

VLLM_PYTHON = os.environ.get(ENV_VAR, "")
pytestmark = [
    pytest.mark.skipif(
        not (VLLM_PYTHON and Path(VLLM_PYTHON).is_file()),
        reason=f"no vLLM environment: set {ENV_VAR} to its python (docs/serving.md 'Serving engines (vLLM)'; .ci/run builds it)",
    ),
]
MAX_BATCH = 8
# vLLM's own reading of the schedule: its validator, then the dense batch size -> k lookup its scheduler uses.
VLLM_LOOKUP = """
import json, sys
from vllm.v1.spec_decode.dynamic.utils import build_dynamic_sd_schedule_lookup
cfg = json.load(open(sys.argv[1]))
print(json.dumps(build_dynamic_sd_schedule_lookup(cfg["{field}"], {max_batch}, cfg["num_speculative_tokens"])))
"""


def test_vllm_accepts_the_written_schedule_and_serves_a_tiny_export_with_it(tmp_path: Path, capsys) -> None:
    target = FrozenTarget.load(str(TINY_LLAMA))
    export = our_export("scylla", target, tmp_path / "scylla")  # an early-exit head: some drafts accepted
    _, served, method = prepare(str(export), str(TINY_LLAMA.resolve()), tmp_path)
    spec = tmp_path / "spec.json"
    plan_main([str(vllm_laws(tmp_path / "laws.json")), "--compute", "1e13", "--batch", "8", "--depths", "2",
               "--engine", "vllm", "--method", method, "--draft", served, "--out", str(spec),
               "--max-batch", str(MAX_BATCH)])  # fmt: skip
    capsys.readouterr()
    config = json.loads(spec.read_text())
    schedule = config[FIELD]
    assert k_at(schedule, 1) == 3 and k_at(schedule, MAX_BATCH) == 1, schedule  # the crossing lies inside

    lookup = subprocess.run(
        [VLLM_PYTHON, "-I", "-c", VLLM_LOOKUP.format(field=FIELD, max_batch=MAX_BATCH), str(spec)],
        env=worker_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert lookup.returncode == 0, lookup.stderr[-3000:]
    dense = json.loads(lookup.stdout.strip().splitlines()[-1])
    assert dense[1:] == [k_at(schedule, b) for b in range(1, MAX_BATCH + 1)]

    prompts = decode_prompts(AutoTokenizer.from_pretrained(TINY_LLAMA), MAX_BATCH)
    result = run_vllm(VLLM_PYTHON, job(str(TINY_LLAMA.resolve()), prompts, [1, MAX_BATCH], 8, config, []))
    table, failures = rows(result, [1, MAX_BATCH])
    assert failures == [], failures  # accepted, built, and every greedy output equals the target alone's
    at = {r["batch_size"]: r for r in table if r["run"] == "schedule"}
    # Batch 1: every step drafts the scheduled 3. Batch 8: steps with 8 running requests draft 1, so the
    # average falls well below 3 (a fixed k=3 would keep it at exactly 3).
    assert at[1]["num_drafts"] > 0 and at[1]["num_draft_tokens"] == 3 * at[1]["num_drafts"]
    assert at[MAX_BATCH]["num_drafts"] > 0
    assert at[MAX_BATCH]["num_draft_tokens"] < 2 * at[MAX_BATCH]["num_drafts"], at[MAX_BATCH]
    assert sum(r["num_accepted_tokens"] for r in at.values()) > 0
