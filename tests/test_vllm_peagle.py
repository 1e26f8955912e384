"""P-EAGLE served by real vLLM 0.32 (`{"method": "eagle3", "parallel_drafting": true}`) from our
speculators-peagle export: greedy outputs equal vLLM's plain run, and vLLM's spec-decode counters equal our
engine's, per prompt and position, with a head trained briefly against the real target so that drafts are
accepted, also from the mask slots (tests/peagle_trained.py; trained once per session).

What it pins: vLLM's parallel drafting feeds slot 1 the last token with its fused target layers and slots
2..k the mask token with fc(mask_hidden), at the next positions, attending causally
(llm_base_proposer.py); our drafter must draft exactly that. Skipped, saying why, without
DRAFTFORGE_VLLM_PYTHON.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from data.target_io import eos_token_ids
from eval.config import PromptsConfig
from eval.engine import Engine
from eval.prompts import load_prompts
from eval.vllm_backend import compare
from eval.vllm_backend.runner import ENV_VAR, worker_env
from tests.conftest import TINY_LLAMA
from tests.peagle_trained import train_head
from tests.vllm_greedy import vllm_counts_equal_ours
from train.decoding.drafter import CHAIN, DraftSettings
from train.drafts.peagle import SPEC
from train.drafts.peagle import export_speculators as fmt
from train.drafts.peagle.drafter import PEagleDrafter
from train.drafts.peagle.head import PEagleHead
from train.export_formats.card import VLLM_OFFLINE_NOTE
from train.export_formats.common import Target
from train.modeling.target import FrozenTarget

VLLM_PYTHON = os.environ.get(ENV_VAR, "")
pytestmark = [
    pytest.mark.skipif(
        not (VLLM_PYTHON and Path(VLLM_PYTHON).is_file()),
        reason=f"no vLLM environment: set {ENV_VAR} to its python (docs/serving.md; .ci/run builds it)",
    ),
]
NEW_TOKENS = 16
K = 3


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[FrozenTarget, PEagleHead, Path]:
    target = FrozenTarget.load(str(TINY_LLAMA))
    head, _ = train_head(target, k=K)
    served = tmp_path_factory.mktemp("peagle") / "vllm-peagle"
    notes = fmt.export(head, {}, served, Target.load(str(TINY_LLAMA)), "float32")
    (served / "README.md").write_text("\n".join(["# card", "", *notes]) + "\n")
    return target, head, served


def our_records(target: FrozenTarget, head: PEagleHead, prompts: list[list[int]], k: int) -> list[dict]:
    settings = DraftSettings(mode=CHAIN, draft_length=k)
    eos = eos_token_ids(target.model, target.tokenizer)  # where the target's generation config stops, as vLLM
    out = []
    for p in prompts:  # batch 1, as vLLM's per-prompt counters are read
        row = Engine(target, PEagleDrafter(head, target), settings, eos).generate([p], NEW_TOKENS).rows[0]
        out.append({"output_token_ids": row.tokens, "accepted_lengths": row.accepted})
    return out


def test_peagle_in_vllm_equals_our_engine(trained: tuple) -> None:
    target, head, served = trained
    ps = load_prompts(PromptsConfig(source="tasks", num_prompts=6), target.tokenizer).prompts
    prompts, ids = [p.input_ids for p in ps], [p.id for p in ps]
    ours = our_records(target, head, prompts, K)
    spec = SPEC.speculative_config("vllm", str(served), K)
    assert spec["method"] == "eagle3" and spec["parallel_drafting"] is True
    c = vllm_counts_equal_ours(VLLM_PYTHON, TINY_LLAMA, ids, prompts, ours, spec, K, NEW_TOKENS)
    # counts that equal ours must not be 0 = 0, and a mask slot's draft must be accepted somewhere: position
    # 2 is drafted from the mask slot only (parallel drafting), so equal counts there pin its inputs
    per_pos = c["num_accepted_tokens_per_pos"]
    assert c["num_accepted_tokens"] > 0 and per_pos[1] > 0, c
    # The comparison can see a wrong mask-slot input: had the slots read another token, our counts would differ
    # (measured: 13 -> 14 accepted, position 2: 2 -> 3). mask_hidden is not pinned this way: zeroing it
    # changes none of this head's accepted drafts (tests/test_peagle.py pins it against the training forward).
    mask_id = head.config.mask_token_id
    try:
        head.config.mask_token_id = mask_id + 5
        other = our_records(target, head, prompts, K)
    finally:
        head.config.mask_token_id = mask_id
    want = compare.our_counts([r["accepted_lengths"] for r in ours], K)
    assert compare.our_counts([r["accepted_lengths"] for r in other], K) != want


def test_peagle_card_command_runs_as_printed(trained: tuple, tmp_path: Path) -> None:
    _, _, served = trained
    text = (served / "README.md").read_text()
    cmd = text.split(VLLM_OFFLINE_NOTE, 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert '"method": "eagle3"' in cmd and '"parallel_drafting": True' in cmd, cmd
    env = worker_env()
    env["PATH"] = f"{Path(VLLM_PYTHON).parent}{os.pathsep}{env['PATH']}"  # `python` is vLLM's python
    proc = subprocess.run(cmd, shell=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"card command failed:\n{cmd}\n{proc.stderr[-3000:]}"
