"""Every draft architecture drafts through the eval engine's one interface and stays lossless at
temperature 0 (chain and, where the architecture supports it, tree), on the shipped tiny target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, register_resolvers
from data.target_io import eos_token_ids
from eval.drafters import DraftSettings, NoDrafter
from eval.engine import Engine
from tests.conftest import TINY_LLAMA
from train.config import to_typed
from train.draft_factory import build_draft
from train.drafts.medusa.drafter import MedusaDrafter
from train.drafts.registry import SPECS, algorithms
from train.modeling.target import FrozenTarget

register_resolvers()
TEXTS = ["The json module can serialize Python objects", "def read(path):", "Lists are", "In Python"]
N_NEW = 12
CHAIN = DraftSettings(mode="chain", draft_length=3)
TREE = DraftSettings(depth=3, topk=3, budget=8)


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    torch.set_num_threads(1)
    t = FrozenTarget.load(str(TINY_LLAMA), attn_implementation="sdpa")
    return t


@pytest.fixture(scope="module")
def prompts(target: FrozenTarget) -> list[list[int]]:
    return [target.tokenizer(t)["input_ids"] for t in TEXTS]


@pytest.fixture(scope="module")
def reference(target: FrozenTarget, prompts: list[list[int]]) -> list[list[int]]:
    engine = Engine(target, NoDrafter(), DraftSettings(), eos_token_ids(target.model, target.tokenizer))
    return [engine.generate([p], N_NEW).rows[0].tokens for p in prompts]


def head(target: FrozenTarget, tmp_path: Path, *overrides: str) -> torch.nn.Module:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=[f"output_dir={tmp_path}", "logger=none", *overrides]))
    torch.manual_seed(0)
    return build_draft(cfg, target).eval()


def drafter(name: str, target: FrozenTarget, tmp_path: Path):  # noqa: ANN201
    """The algorithm's drafter around a fresh head with its default config, as eval makes it from an export."""
    return SPECS[name].drafter(head(target, tmp_path, f"draft={name}"), target)


# Every registered algorithm, in both shapes (the list comes from the registry: a new folder is tested too).
@pytest.mark.parametrize(
    ("name", "shape"), [(s.name, shape) for s in algorithms() for shape in ("chain", "tree")]
)
def test_every_architecture_is_lossless(
    name: str, shape: str, target: FrozenTarget, prompts: list[list[int]], reference, tmp_path: Path
) -> None:
    settings = CHAIN if shape == "chain" else TREE
    engine = Engine(
        target, drafter(name, target, tmp_path), settings, eos_token_ids(target.model, target.tokenizer)
    )
    out = engine.generate(prompts, N_NEW)  # batch of 4, ragged acceptance
    assert [r.tokens for r in out.rows] == reference


def test_medusa_with_zero_heads_proposes_the_targets_next_token(target: FrozenTarget, tmp_path: Path) -> None:
    """Zero-initialised heads copy the target's own next-token prediction, so every drafted token is the
    target's argmax at the root's position: a check that the heads read the right feature."""
    d = MedusaDrafter(head(target, tmp_path, "draft=medusa"), target)
    ids = torch.tensor([target.tokenizer("Lists are")["input_ids"]])
    feats = target.features(ids)
    d.start(1)
    d.observe(ids, feats.hidden, torch.ones_like(ids, dtype=torch.bool))
    tree = d.propose(feats.logits[:, -1].argmax(-1), CHAIN, None)
    assert (tree.tokens == feats.logits[0, -1].argmax()).all()
