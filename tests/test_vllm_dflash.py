"""DFlash served by real vLLM 0.32 (`method: "dflash"`) from our vLLM-layout export: greedy outputs equal vLLM's
plain run, and vLLM's spec-decode counters equal our engine's, per prompt and position, with a head trained
briefly against the real target so that drafts are accepted (tests/dflash_trained.py; trained once per session).

vLLM's DFlash loader does not notice a weight missing from the checkpoint (its load_weights returns None, so
vLLM's "not initialised" check is skipped): counts that equal ours on a head whose every tensor matters are
the check that each one loaded. Skipped, saying why, without DRAFTFORGE_VLLM_PYTHON.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from data.target_io import eos_token_ids
from eval.config import PromptsConfig
from eval.engine import Engine
from eval.prompts import load_prompts
from eval.vllm_backend.runner import ENV_VAR, worker_env
from tests.conftest import TINY_LLAMA
from tests.dflash_trained import train_head
from tests.vllm_greedy import vllm_counts_equal_ours
from train.decoding.drafter import CHAIN, DraftSettings
from train.drafts.dflash import export_vllm as fmt
from train.drafts.dflash.drafter import DFlashDrafter
from train.drafts.dflash.head import DFlashHead
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


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[FrozenTarget, DFlashHead, Path]:
    target = FrozenTarget.load(str(TINY_LLAMA))
    head, _ = train_head(
        target, steps=150, lr=6e-3
    )  # measured: vLLM = ours, 3 of 171 drafted tokens accepted
    served = tmp_path_factory.mktemp("dflash") / "vllm-dflash"
    notes = fmt.export(head, {}, served, Target.load(str(TINY_LLAMA)), "float32")
    (served / "README.md").write_text("\n".join(["# card", "", *notes]) + "\n")
    return target, head, served


def our_records(target: FrozenTarget, head: DFlashHead, prompts: list[list[int]], k: int) -> list[dict]:
    settings = DraftSettings(mode=CHAIN, draft_length=k)
    out = []
    for p in prompts:  # batch 1, as vLLM's per-prompt counters are read
        # stop where the target's generation config stops (<|im_end|> and <|endoftext|>), as vLLM does
        eos = eos_token_ids(target.model, target.tokenizer)
        row = Engine(target, DFlashDrafter(head, target), settings, eos).generate([p], NEW_TOKENS).rows[0]
        out.append({"output_token_ids": row.tokens, "accepted_lengths": row.accepted})
    return out


def test_dflash_in_vllm_equals_our_engine(trained: tuple) -> None:
    target, head, served = trained
    k = head.config.block_size - 1
    ps = load_prompts(PromptsConfig(source="tasks", num_prompts=6), target.tokenizer).prompts
    prompts, ids = [p.input_ids for p in ps], [p.id for p in ps]
    ours = our_records(target, head, prompts, k)
    spec = {"method": "dflash", "model": str(served), "num_speculative_tokens": k}
    c = vllm_counts_equal_ours(VLLM_PYTHON, TINY_LLAMA, ids, prompts, ours, spec, k, NEW_TOKENS)
    # counts that equal ours must not be 0 = 0: the trained head's drafts are accepted (a small share: 150
    # steps on 4k tokens, what this CPU affords per test session; docs/dflash.md has the numbers)
    assert c["num_accepted_tokens"] > 0 and c["num_draft_tokens"] > 0, c


def test_dflash_card_command_runs_as_printed(trained: tuple, tmp_path: Path) -> None:
    _, _, served = trained
    text = (served / "README.md").read_text()
    cmd = text.split(VLLM_OFFLINE_NOTE, 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert '"method": "dflash"' in cmd, cmd
    env = worker_env()
    env["PATH"] = f"{Path(VLLM_PYTHON).parent}{os.pathsep}{env['PATH']}"  # `python` is vLLM's python
    proc = subprocess.run(cmd, shell=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"card command failed:\n{cmd}\n{proc.stderr[-3000:]}"


def test_head_is_not_trivial(trained: tuple) -> None:
    """Every tensor of the served head differs from its init value (a dropped one would change vLLM's drafts)."""
    _, head, _ = trained
    for name, p in head.state_dict().items():
        assert torch.isfinite(p).all() and p.abs().sum() > 0, name
