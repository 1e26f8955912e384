"""The main job (launch/quickstart.sh) as it is shipped: its two commands compose against the shipped
deep-llama target with the decoding it measures, and that target decodes losslessly under speculation.

The run itself (~8 minutes on 2 cores) is checked from outside on a fresh clone; here its commands are
read from the script's own DRY_RUN output, so a test cannot pass on commands the script no longer runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from data.embedded_paths import DEEP_LLAMA_DIR
from data.paths import CONF_DIR, REPO_ROOT, register_resolvers
from data.target_io import eos_token_ids
from eval.config import to_eval_config
from eval.drafters import DraftSettings, NoDrafter
from eval.engine import Engine
from tests.test_eval_lossless import decode, prompts
from train.config import to_typed
from train.drafts.eagle.drafter import EagleDrafter, random_eagle_head
from train.modeling.target import FrozenTarget, TargetConfig


def dry_run(*overrides: str) -> list[list[str]]:
    env = {**os.environ, "DRY_RUN": "1", "NPROC": "2"}
    out = subprocess.run(
        ["bash", "launch/quickstart.sh", *overrides], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.strip().splitlines()]


def same_run(words: list[str]) -> set[str]:
    """An eval command's overrides less the ones that choose what is measured and where it is written."""
    return {w for w in words[3:] if not w.startswith(("output_dir=", "mode=", "draft_length="))}


def overrides_after(words: list[str], module: str) -> list[str]:
    return words[words.index(module) + 1 :]


def test_main_job_trains_and_evaluates_on_the_deep_target_with_a_chain_of_two() -> None:
    train_cmd, eval_cmd = dry_run()
    assert train_cmd[:3] == ["python", "-m", "torch.distributed.run"]
    assert eval_cmd[:3] == ["python", "-m", "eval"]
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        train = to_typed(compose("train", overrides=overrides_after(train_cmd, "train")))
        evaluation = to_eval_config(compose("eval", overrides=overrides_after(eval_cmd, "eval")))
    assert Path(train.target.name_or_path) == DEEP_LLAMA_DIR and DEEP_LLAMA_DIR.is_dir()
    assert Path(evaluation.target.name_or_path) == DEEP_LLAMA_DIR
    assert (evaluation.mode, evaluation.draft_length) == ("chain", 2)
    assert train.train.max_steps == 500 and evaluation.prompts.num_prompts == 32


def test_a_target_override_reaches_both_commands_once() -> None:
    train_cmd, eval_cmd = dry_run("target=tiny-qwen2", "draft=eagle3")
    assert [w for w in train_cmd if w.startswith("target=")] == ["target=tiny-qwen2"]
    assert "target=tiny-qwen2" in eval_cmd and "draft=eagle3" in train_cmd


@pytest.fixture(scope="module")
def deep() -> FrozenTarget:
    torch.set_num_threads(1)
    return TargetConfig(name_or_path=str(DEEP_LLAMA_DIR), attn_implementation="sdpa").load("cpu")


@pytest.mark.parametrize("bs", [1, 8])
def test_deep_target_decodes_losslessly_with_the_main_jobs_chain(deep: FrozenTarget, bs: int) -> None:
    """What the main job's eval runs (chain of 2, batch 1; batch 8 for ragged rows), against HF's greedy
    generate on the same prompts, with an untrained head so that drafts are rejected and the cache rolls back."""
    ps, eos = prompts(deep), eos_token_ids(deep.model, deep.tokenizer)
    reference = []
    for p in ps:
        ids = torch.tensor([p])
        hf = deep.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=14, do_sample=False,
                                 eos_token_id=sorted(eos), pad_token_id=sorted(eos)[0])  # fmt: skip
        reference.append(hf[0, ids.shape[1] :].tolist())
    settings = DraftSettings(mode="chain", draft_length=2)
    torch.manual_seed(0)
    eagle = EagleDrafter(random_eagle_head(deep).eval(), deep)
    assert decode(Engine(deep, eagle, settings, eos), ps, bs) == reference
    assert decode(Engine(deep, NoDrafter(), settings, eos), ps, bs) == reference


def test_evaluation_page_commands_are_the_main_jobs_and_compose() -> None:
    """docs/evaluation.md's measured table names its commands: the main job first, then evals of its export
    that differ from the main job's own eval only in the decoding they measure."""
    from tests.readme_blocks import DOCS, section_commands

    first, *evals = section_commands("## The main job's speed-up", DOCS / "evaluation.md")
    assert first == "bash launch/quickstart.sh"
    _, main_eval = dry_run()
    register_resolvers()
    decodings = []
    for command in evals:
        words = command.split()
        assert words[:3] == ["python", "-m", "eval"], command
        assert same_run(words) == same_run(main_eval), command
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = to_eval_config(compose("eval", overrides=words[3:]))
        decodings.append((cfg.mode, cfg.draft_length if cfg.mode == "chain" else None))
    assert decodings == [("chain", 3), ("chain", 4), ("tree", None)]
