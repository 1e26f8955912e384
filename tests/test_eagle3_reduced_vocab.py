"""The EAGLE-3 drafter searches in its reduced draft vocabulary and maps only the ids it picks to target ids
(train/decoding/vocab.py), instead of scattering every draft forward's logits into a full-vocabulary -inf
tensor. It must propose exactly what the full-vocabulary search proposed (tests/reference_eagle3_drafter.py,
the old path kept as the oracle): same tokens, parents, depths, scores to fp tolerance and the same q, for
EAGLE-3 and Scylla heads, chains and trees, greedy and sampled, on the shipped tiny target."""

from __future__ import annotations

import pytest
import torch

from data.target_io import eos_token_ids
from eval.drafters import DraftSettings
from eval.engine import Engine
from tests.conftest import TINY_LLAMA
from tests.reference_eagle3_drafter import FullVocabEagle3Drafter
from train.decoding import trees
from train.decoding.drafter import DraftTree
from train.decoding.sampling import Sampling
from train.drafts.eagle3.drafter import Eagle3Drafter
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.drafts.eagle3.layers import default_layers
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget

TEXTS = ["The json module can serialize Python objects", "def read(path):", "Lists are", "In Python"]
N_NEW = 16
GREEDY = {
    "chain": DraftSettings(mode="chain", draft_length=4),
    "tree": DraftSettings(depth=5, topk=4, budget=24),
}
SAMPLED = DraftSettings(mode="chain", draft_length=4, sampling=Sampling(temperature=1.0, top_p=0.95))


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    torch.set_num_threads(1)
    return FrozenTarget.load(str(TINY_LLAMA), attn_implementation="sdpa")


def random_eagle3_head(
    target: FrozenTarget, draft_vocab: int, num_layers: int = 1, seed: int = 0
) -> Eagle3Head:
    """An EAGLE-3 head (Scylla with num_layers > 1) over `draft_vocab` target ids drawn at random and left
    unsorted (so a map that ignores the order shows), its LM head started from the target's rows as build.py
    does; random weights otherwise."""
    torch.manual_seed(seed)
    cfg = target.model.config
    head = Eagle3Head(
        Eagle3HeadConfig(
            **attention_dims(cfg, num_layers),
            vocab_size=target.vocab_size,
            draft_vocab_size=draft_vocab,
            feature_layers=default_layers(target.num_layers),
        )
    )
    with torch.no_grad():
        head.d2t.copy_(torch.randperm(target.vocab_size)[:draft_vocab])
        head.lm_head.weight.copy_(target.lm_head.weight[head.d2t].float())
    return head.to(target.device, target.dtype).eval()


def recorded(drafter: Eagle3Drafter) -> list[DraftTree]:
    """Every tree the drafter proposes from now on, in order."""
    seen, propose = [], drafter.propose

    def keep(*args, **kwargs) -> DraftTree:  # noqa: ANN002, ANN003
        seen.append(propose(*args, **kwargs))
        return seen[-1]

    drafter.propose = keep
    return seen


def assert_same_tree(new: DraftTree, old: DraftTree) -> None:
    assert torch.equal(new.tokens, old.tokens)
    assert torch.equal(new.parents, old.parents)
    assert torch.equal(new.depths, old.depths)
    torch.testing.assert_close(new.scores, old.scores, rtol=1e-5, atol=1e-5)
    assert (new.q is None) == (old.q is None)
    if new.q is not None:
        assert new.q.shape == old.q.shape  # (B, N, target vocabulary): what verification reads
        torch.testing.assert_close(new.q, old.q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2], ids=["eagle3", "scylla"])
@pytest.mark.parametrize("shape", sorted(GREEDY))
def test_greedy_proposals_equal_the_full_vocabulary_search(
    target: FrozenTarget, shape: str, num_layers: int
) -> None:
    """Whole greedy generations of a ragged batch (the engine drives both drafters): every proposal equal,
    and so every output."""
    head = random_eagle3_head(target, draft_vocab=1024, num_layers=num_layers)
    prompts = [target.tokenizer(t)["input_ids"] for t in TEXTS]
    eos = eos_token_ids(target.model, target.tokenizer)
    proposals, outputs = {}, {}
    for name, cls in (("new", Eagle3Drafter), ("old", FullVocabEagle3Drafter)):
        drafter = cls(head, target)
        proposals[name] = recorded(drafter)
        out = Engine(target, drafter, GREEDY[shape], eos).generate(prompts, N_NEW)
        outputs[name] = [r.tokens for r in out.rows]
    assert outputs["new"] == outputs["old"]
    assert len(proposals["new"]) == len(proposals["old"]) > 2
    for new, old in zip(proposals["new"], proposals["old"], strict=True):
        assert_same_tree(new, old)
    # The proposals are target ids of draft-vocabulary tokens, below the first level too.
    d2t = set(head.d2t.tolist())
    assert all(set(t.tokens.flatten().tolist()) <= d2t for t in proposals["new"])
    assert max(int(t.depths.max()) for t in proposals["new"]) > 2


@pytest.mark.parametrize("num_layers", [1, 2], ids=["eagle3", "scylla"])
def test_sampled_chain_draws_from_the_full_vocabulary_q(
    target: FrozenTarget, num_layers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sampled chain consumes the generator differently over 1,024 draft ids than over 4,096 target ids, so
    the oracle is replayed along the new path's draws: at every node both paths must hold the same q (over
    target ids, zero outside the draft vocabulary) and score the drawn token the same."""
    head = random_eagle3_head(target, draft_vocab=1024, num_layers=num_layers)
    rows = [target.tokenizer(t)["input_ids"] for t in TEXTS]
    n = min(map(len, rows))  # equal lengths: one batch without padding
    ids = torch.tensor([r[:n] for r in rows], device=target.device)
    with torch.inference_mode():
        new, old = Eagle3Drafter(head, target), FullVocabEagle3Drafter(head, target)
        feats = target.features(ids, layers=new.feature_layers)
        root = feats.logits[:, -1].argmax(-1)
        for d in (new, old):
            d.start(len(ids))
            d.observe(ids, feats.layers, torch.ones_like(ids, dtype=torch.bool))
        tree = new.propose(root, SAMPLED, torch.Generator(device=target.device).manual_seed(7))
        draws = iter(tree.tokens.unbind(1))

        def replay(q: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
            tok = next(draws)
            assert bool((q.gather(-1, tok[:, None]) > 0).all()), "the new path drew a token q rules out"
            return tok

        monkeypatch.setattr(trees, "sample", replay)
        oracle = old.propose(root, SAMPLED, None)
    assert_same_tree(tree, oracle)
    outside = torch.ones(target.vocab_size, dtype=torch.bool)
    outside[head.d2t] = False
    assert bool((tree.q[..., outside] == 0).all())
    torch.testing.assert_close(tree.q.sum(-1), torch.ones(tree.tokens.shape))
