"""At temperature 0, speculative decoding (chain and tree, batch 1 and 8) must reproduce the target's greedy
output exactly, whatever the draft; and a tree must be verified with each node seeing exactly its ancestors.

Real shipped targets and real EAGLE heads; the stand-ins are drafts built to probe the bookkeeping: the
target drafting for itself (every greedy-path token accepted, so long paths are compacted into the cache)
and a deliberately wrong verifier.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data.embedded_paths import TINY_LLAMA_DIR, TINY_QWEN2_DIR
from data.target_io import eos_token_ids
from data.tracking import LoggerConfig
from eval.config import EvalConfig, PromptsConfig, TreeConfig
from eval.drafters import DraftSettings, NoDrafter
from eval.drafters.oracle import TargetDrafter
from eval.engine import Engine
from eval.run import LosslessError, evaluate
from eval.verify import TreeVerifier, Walk
from train.decoding.trees import dynamic_tree, static_tree, tree_visibility
from train.drafts.eagle.drafter import EagleDrafter, random_eagle_head
from train.modeling.target import FrozenTarget, TargetConfig

TARGETS = {"tiny-llama": TINY_LLAMA_DIR, "tiny-qwen2": TINY_QWEN2_DIR}
TEXTS = ["The json module can serialize Python objects", "def read(path):", "Lists are", "A class",
         "Exceptions are raised when an error", "import os\n", "The socket module provides", "In Python"]  # fmt: skip
SHAPES = {
    "chain": DraftSettings(mode="chain", draft_length=3),
    "tree": DraftSettings(depth=4, topk=3, budget=10),
}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> FrozenTarget:
    torch.set_num_threads(1)  # tiny models: threads only add scheduling noise on a shared 2-core machine
    return TargetConfig(name_or_path=str(TARGETS[request.param]), attn_implementation="sdpa").load("cpu")


def prompts(target: FrozenTarget) -> list[list[int]]:
    chat = target.tokenizer.apply_chat_template(
        [{"role": "user", "content": "How do I read a file in Python?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    docs = [target.tokenizer(t)["input_ids"] for t in TEXTS[:7]]
    return [target.tokenizer(chat, add_special_tokens=False)["input_ids"], *docs]


N_NEW = 14


def decode(engine: Engine, ps: list[list[int]], bs: int, n: int = N_NEW) -> list[list[int]]:
    return [r.tokens for i in range(0, len(ps), bs) for r in engine.generate(ps[i : i + bs], n).rows]


@pytest.fixture(scope="module")
def greedy(target: FrozenTarget) -> list[list[int]]:
    """The reference: the engine with no draft at batch 1, itself checked against HF generate on every prompt
    (the chat prompt and the documents), token for token and to the same length (an eos stops both)."""
    ps, eos = prompts(target), eos_token_ids(target.model, target.tokenizer)
    ref = decode(Engine(target, NoDrafter(), DraftSettings(), eos), ps, 1)
    for i, p in enumerate(ps):
        ids = torch.tensor([p])
        hf = target.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
                                   do_sample=False, eos_token_id=sorted(eos), pad_token_id=sorted(eos)[0])  # fmt: skip
        assert ref[i] == hf[0, ids.shape[1] :].tolist(), f"prompt {i}: our greedy reference is not HF's"
    return ref


@pytest.mark.parametrize("bs", [1, 8])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_lossless_chain_and_tree(target: FrozenTarget, greedy: list[list[int]], shape: str, bs: int) -> None:
    ps, eos, settings = prompts(target), eos_token_ids(target.model, target.tokenizer), SHAPES[shape]
    assert decode(Engine(target, NoDrafter(), settings, eos), ps, bs) == greedy  # ragged batch, same output
    torch.manual_seed(0)
    eagle = EagleDrafter(random_eagle_head(target).eval(), target)
    assert decode(Engine(target, eagle, settings, eos), ps, bs) == greedy
    oracle = Engine(target, TargetDrafter(target), settings, eos)
    assert decode(oracle, ps, bs) == greedy
    # The perfect draft's chain is always accepted whole; in a tree its top child of the root always is
    # (reranking may drop deeper greedy-path nodes in favour of likelier siblings).
    for row in oracle.generate(ps[:bs], N_NEW).rows:
        if shape == "chain":
            assert all(a == settings.draft_length for a in row.accepted[:-1])
        else:
            assert all(a >= 1 for a in row.accepted[:-1]) and sum(row.accepted) > len(row.accepted)


def test_tree_mask_each_node_sees_exactly_its_ancestors() -> None:
    g = torch.Generator().manual_seed(0)
    parents = [[-1] + [int(torch.randint(-1, i, (), generator=g)) for i in range(1, 12)] for _ in range(3)]
    vis = tree_visibility(torch.tensor(parents))
    for b, par in enumerate(parents):
        for i in range(len(par) + 1):
            chain, node = {0, i}, i - 1
            while node >= 0:
                chain.add(node + 1)
                node = par[node]
            assert {j for j in range(len(par) + 1) if vis[b, i, j]} == chain


def test_tree_verify_forward_equals_plain_forward_on_each_path(target: FrozenTarget) -> None:
    """One forward over a (batched, ragged) tree gives each node the logits the target gives that node's
    root-to-node path decoded plainly: the 4D mask and positions are right for the HF model."""
    ps, eos = prompts(target)[:3], eos_token_ids(target.model, target.tokenizer)
    seen: list[tuple[torch.Tensor, torch.Tensor, list]] = []

    class Spy(TreeVerifier):
        def __call__(self, tree, logits, gen) -> list[Walk]:
            seen.append((tree.tokens.clone(), tree.parents.clone(), logits.clone()))
            return super().__call__(tree, logits, gen)

    engine = Engine(
        target, TargetDrafter(target, distort=3.0), SHAPES["tree"], eos, Spy(SHAPES["tree"].sampling)
    )
    out = engine.generate(ps, 3)
    tokens, parents, logits = seen[0]  # the first step: every row's context is prompt + first token
    for b, p in enumerate(ps):
        ctx = p + out.rows[b].tokens[:1]
        for i in range(tokens.shape[1]):
            path, node = [], i
            while node >= 0:
                path.insert(0, int(tokens[b, node]))
                node = int(parents[b, node])
            plain = target.model(input_ids=torch.tensor([ctx + path])).logits[0, -1]
            torch.testing.assert_close(logits[b, i + 1], plain, rtol=1e-4, atol=1e-4)


def test_dynamic_tree_is_closed_ranked_and_within_budget() -> None:
    torch.manual_seed(0)
    v, b = 50, 2

    def step(tokens, parent, visible, depth):
        assert visible.shape[:2] == tokens.shape and visible[..., -tokens.shape[1] :].diagonal(0, 1, 2).all()
        return torch.randn(b, tokens.shape[1], v)

    tree = dynamic_tree(torch.randn(b, v), step, depth=4, topk=3, budget=9)
    assert tree.tokens.shape == (b, 9)
    par, dep = tree.parents, tree.depths
    assert bool((par < torch.arange(9)).all())  # topological: a parent precedes its children
    assert bool(((par == -1) == (dep == 1)).all())
    assert bool((dep[par >= 0] == dep.gather(1, par.clamp(min=0))[par >= 0] + 1).all())


def test_static_tree_from_per_head_topk() -> None:
    cands = torch.tensor([[[10, 11, 12], [20, 21, 22], [30, 31, 32]]])  # (B=1, heads=3, K=3)
    tree = static_tree(cands, [(0,), (1,), (0, 0), (0, 2), (0, 0, 1)])
    assert tree.tokens.tolist() == [[10, 11, 20, 22, 31]]
    assert tree.parents.tolist() == [[-1, -1, 0, 0, 2]]
    with pytest.raises(ValueError, match="lack their parent"):
        static_tree(cands, [(0,), (1, 0)])


def eval_config(target: FrozenTarget, out: Path, draft_path: str, **kw) -> EvalConfig:
    return EvalConfig(
        target=TargetConfig(name_or_path=target.name_or_path),
        logger=LoggerConfig(name="none", mode="disabled"),
        draft_path=draft_path,
        prompts=PromptsConfig(num_prompts=kw.pop("num_prompts", 6)),
        max_new_tokens=kw.pop("max_new_tokens", 16),
        device="cpu",
        progress=False,
        output_dir=str(out),
        **kw,
    )


def test_evaluate_reports_every_category_and_batch_size(target: FrozenTarget, tmp_path: Path) -> None:
    cfg = eval_config(
        target, tmp_path, "random", batch_sizes=[1, 4], tree=TreeConfig(depth=3, topk=2, budget=5)
    )
    result = evaluate(cfg, target=target)
    assert result.lossless and set(result.by_batch_size) == {1, 4}
    assert {r["category"] for r in result.records} == set(result.metrics) - {"all"}
    assert len(result.metrics) == 7  # all + six task categories
    m = result.metrics["all"]
    assert 1.0 <= m["tau"] <= 4.0 and m["spec_tokens"] == m["baseline_tokens"]
    assert result.by_batch_size[4]["all"]["spec_tokens"] == m["spec_tokens"]
    assert all(
        result.files[k].read_bytes()[:4] == b"\x89PNG"
        for k in ("acceptance_png", "category_png", "batch_png")
    )


def test_wrong_verifier_fails_loudly(target: FrozenTarget, tmp_path: Path) -> None:
    """A verifier that accepts every drafted token of the first branch must not pass as lossless."""

    class AcceptAll(TreeVerifier):
        @staticmethod
        def greedy_walk(tokens, kids, argmax) -> Walk:
            path, at = [], 0
            while kids[at]:
                path.append(kids[at][0])
                at = path[-1] + 1
            return Walk(path, argmax[at], len(path))

    cfg = eval_config(target, tmp_path / "eval", "random", num_prompts=2, max_new_tokens=12)
    with pytest.raises(LosslessError, match=r"prompt \w+/\S+ \(batch size 1\): speculative output differs"):
        evaluate(cfg, target=target, verifier=AcceptAll(DraftSettings().sampling))
    rows = [json.loads(line) for line in (tmp_path / "eval" / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and not any(r["lossless"] for r in rows)
    assert all(r["first_mismatch"] >= 1 for r in rows)  # the prefill's token is always right
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["lossless"] is False
