"""The budgeted serving policy (`tree.batch_budget`, eval.budget): the rows of a batch share one cap on
drafted tokens per target forward. It must stay lossless at every batch size, cut each row to a valid
subtree of its best-scored nodes, and make tau fall as the batch grows (the Scylla batch-size law under a
serving engine's token budget).

Real tiny target; the drafts are a random EAGLE head (as in test_eval_lossless) and a dense draft that is a
second copy of the target itself loaded through `load_dense`, so tokens are accepted and tau can move.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from data.embedded_paths import TINY_LLAMA_DIR
from data.target_io import eos_token_ids
from eval.budget import share_budget
from eval.drafters import DraftSettings, DraftTree, NoDrafter
from eval.engine import Engine
from eval.laws.batch import main, rows_from_eval_dirs
from eval.report import write_results
from train.decoding.trees import dynamic_tree
from train.drafts.dense.drafter import DenseDrafter, load_dense
from train.drafts.eagle.drafter import EagleDrafter, random_eagle_head
from train.modeling.target import FrozenTarget, TargetConfig

TEXTS = ["The json module can serialize Python objects", "def read(path):", "Lists are", "A class",
         "Exceptions are raised when an error", "import os\n", "The socket module provides", "In Python"]  # fmt: skip
N_NEW = 14
TREE = DraftSettings(depth=4, topk=3, budget=10)
CHAIN = DraftSettings(mode="chain", draft_length=3)


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    torch.set_num_threads(1)
    return TargetConfig(name_or_path=str(TINY_LLAMA_DIR), attn_implementation="sdpa").load("cpu")


@pytest.fixture(scope="module")
def prompts(target: FrozenTarget) -> list[list[int]]:
    return [target.tokenizer(t)["input_ids"] for t in TEXTS]


@pytest.fixture(scope="module")
def greedy(target: FrozenTarget, prompts: list[list[int]]) -> list[list[int]]:
    engine = Engine(target, NoDrafter(), DraftSettings(), eos_token_ids(target.model, target.tokenizer))
    return [engine.generate([p], N_NEW).rows[0].tokens for p in prompts]


@pytest.fixture(scope="module")
def self_draft(target: FrozenTarget) -> DenseDrafter:
    return DenseDrafter(load_dense(str(TINY_LLAMA_DIR), target))


def run(target: FrozenTarget, drafter, settings: DraftSettings, prompts: list[list[int]], bs: int):  # noqa: ANN001, ANN201
    engine = Engine(target, drafter, settings, eos_token_ids(target.model, target.tokenizer))
    return [r for i in range(0, len(prompts), bs) for r in engine.generate(prompts[i : i + bs], N_NEW).rows]


def tau(rows) -> float:  # noqa: ANN001
    return sum(sum(r.emitted) for r in rows) / sum(r.steps for r in rows)


def test_share_budget_keeps_the_best_nodes_as_closed_subtrees() -> None:
    torch.manual_seed(0)
    b, v = 3, 40

    def step(tokens, parent, visible, depth):  # noqa: ANN001, ANN202
        return torch.randn(b, tokens.shape[1], v) * 3

    tree = dynamic_tree(torch.randn(b, v) * 3, step, depth=4, topk=3, budget=9)
    cut = share_budget(tree, 7)
    counts = cut.counts()
    assert sum(counts) == 7 and cut.size == max(counts)
    best = tree.scores.flatten().topk(7).values
    kept = cut.scores[cut.valid]
    torch.testing.assert_close(kept.sort().values, best.sort().values)
    for row in range(b):
        par, n = cut.parents[row].tolist(), counts[row]
        assert all(-1 <= p < i for i, p in enumerate(par[:n]))  # closed under parents, parents first
        assert all(p == -1 for p in par[n:]) and not cut.valid[row, n:].any()
        # A kept node keeps its token and its parent's token: the same path as in the uncut tree.
        orig = {(tree.tokens[row, i].item(), tree.scores[row, i].item()) for i in range(tree.size)}
        assert {(cut.tokens[row, i].item(), cut.scores[row, i].item()) for i in range(n)} <= orig
    assert share_budget(tree, b * tree.size) is tree  # everything fits: untouched
    # Without scores, shallow nodes first; a sampled chain (with q) is cut to a prefix.
    chain = DraftTree(torch.ones(2, 3, dtype=torch.long), torch.tensor([[-1, 0, 1]] * 2),
                      torch.tensor([[1, 2, 3]] * 2), q=torch.full((2, 3, 5), 0.2))  # fmt: skip
    cut = share_budget(chain, 4)
    assert cut.counts() == [2, 2] and cut.depths[cut.valid].tolist() == [1, 2, 1, 2]
    assert cut.q.shape == (2, 2, 5) and cut.parents.tolist() == [[-1, 0], [-1, 0]]


@pytest.mark.parametrize(("shape", "bs"), [("chain", 4), ("tree", 8)])
def test_budgeted_greedy_equals_target_greedy(
    target, prompts, greedy, self_draft, shape: str, bs: int
) -> None:  # noqa: ANN001
    base = CHAIN if shape == "chain" else TREE
    for budget in (1, 5):
        settings = dataclasses.replace(base, batch_budget=budget)
        torch.manual_seed(0)
        eagle = EagleDrafter(random_eagle_head(target).eval(), target)
        assert [r.tokens for r in run(target, eagle, settings, prompts, bs)] == greedy
        rows = run(target, self_draft, settings, prompts, bs)
        assert [r.tokens for r in rows] == greedy
        # The cap holds in every forward: a step's rows together verified at most `budget` drafted tokens.
        per_batch = [rows[i : i + bs] for i in range(0, len(rows), bs)]
        for group in per_batch:
            for step in range(max(r.steps for r in group)):
                assert sum(r.drafted[step] for r in group if step < r.steps) <= budget


def test_tau_falls_with_batch_size_under_a_tight_budget(target, prompts, self_draft) -> None:  # noqa: ANN001
    free = [tau(run(target, self_draft, TREE, prompts, bs)) for bs in (1, 8)]
    assert free[0] == pytest.approx(free[1]) and free[0] > 2.0  # exact verification: batch-invariant
    tight = dataclasses.replace(TREE, batch_budget=4)
    taus = [tau(run(target, self_draft, tight, prompts, bs)) for bs in (1, 2, 4, 8)]
    assert all(a > b for a, b in zip(taus, taus[1:], strict=False)), taus
    assert taus[0] <= free[0] and taus[-1] < 0.6 * free[0]


def test_batch_table_names_budgeted_runs_and_keeps_them_out_of_best(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    def run_dir(name: str, speedups: dict[int, float], taus: dict[int, float], budget: int | None) -> Path:
        by_bs = {b: {"all": {"tau": taus[b], "speedup": s, "draft_ms": 1.0, "verify_ms": 2.0,
                             "baseline_step_ms": 1.5}} for b, s in speedups.items()}  # fmt: skip
        write_results(tmp_path / name, by_bs[1], by_bs, {"config": {"tree": {"batch_budget": budget}}})
        return tmp_path / name

    (tmp_path / "free").mkdir(), (tmp_path / "capped").mkdir()
    free = run_dir("free", {1: 1.6, 8: 1.2}, {1: 3.0, 8: 3.0}, None)
    capped = run_dir("capped", {1: 1.7, 8: 1.3}, {1: 2.9, 8: 1.4}, 16)
    rows = rows_from_eval_dirs({"tree": free, "tree-capped": capped})
    assert [r["best_shape"] for r in rows] == ["tree", "tree"]  # a budgeted run never wins "best"
    assert rows[1]["shapes"]["tree-capped@b16"]["tau"] == 1.4
    main([f"tree={free}", f"tree={capped}"])  # the same shape name twice: the budget tells them apart
    out = capsys.readouterr().out
    assert "tree@b16" in out and "1.20 (3.00)" in out and "1.30 (1.40)" in out
