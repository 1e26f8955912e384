"""Each hot path's fast version gives what the version it replaced gave (tests/bench/ times them side by side).

- Grouped-query attention reads the kv heads in place (sdpa `enable_gqa`) instead of copying the whole cache
  per query head: equal outputs in training (causal, packed block mask) and decoding (cache + chain, tree mask).
- Sampled verification computes every node's target distribution, acceptance probabilities and residuals in
  a few batched tensor ops with one device sync, instead of a Python loop with a sync per child: given the
  same uniforms it accepts the same paths and samples the last token from the same distribution.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from eval.verify import TreeVerifier
from tests.reference_verify import reference_sample_walk
from train.decoding.drafter import DraftTree
from train.decoding.sampling import Sampling
from train.modeling import doc_mask
from train.modeling.draft import layers
from train.modeling.draft.layers import Attention, KVCache


def decode_outputs(attn: Attention) -> list[torch.Tensor]:
    """Training-shaped calls (causal; packed block mask) and a decode: prefill, one token, a 4-node tree."""
    dev = attn.q_proj.weight.device
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 30, attn.q_proj.in_features, generator=g).to(dev)
    pos = torch.arange(30, device=dev).expand(2, -1)
    docs = torch.tensor([[0] * 12 + [1] * 18, [0] * 25 + [1] * 5], device=dev)
    outs = [attn(x, pos), attn(x, doc_mask.doc_positions(docs), attn_mask=doc_mask.doc_causal_mask(docs))]
    cache = KVCache(1)
    outs.append(attn(x[:, :20], pos[:, :20], cache))
    outs.append(attn(x[:, 20:21], pos[:, 20:21], cache))
    tree = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.bool, device=dev
    )
    mask = torch.cat([torch.ones(4, 21, dtype=torch.bool, device=dev), tree], 1)[None, None].expand(
        2, 1, 4, 25
    )
    tree_pos = torch.tensor([[21, 22, 22, 23]], device=dev).expand(2, -1)
    outs.append(attn(x[:, 21:25], tree_pos, cache, attn_mask=mask))
    return outs


def assert_gqa_in_place_equals_copy(
    heads: tuple[int, int], monkeypatch: pytest.MonkeyPatch, device: str = "cpu", **tol: float
) -> None:
    torch.manual_seed(0)
    attn = Attention(96, heads[0], heads[1], 16, 10000.0).to(device).eval()
    with torch.no_grad():
        fast = decode_outputs(attn)
        monkeypatch.setattr(layers, "SDPA_GQA", False)  # the path it replaced: kv copied per query head
        copied = decode_outputs(attn)
    assert layers.SDPA_GQA is False and len(fast) == 5
    for a, b in zip(fast, copied, strict=True):
        torch.testing.assert_close(a, b, **(tol or {"rtol": 1e-5, "atol": 1e-6}))


@pytest.mark.parametrize("heads", [(8, 2), (6, 3), (4, 4)])
def test_grouped_query_attention_reads_kv_in_place_with_the_same_result(
    heads: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_gqa_in_place_equals_copy(heads, monkeypatch)


def random_tree(g: torch.Generator, batch: int, vocab: int, sampled: bool) -> DraftTree:
    """Ragged trees (padding nodes in row 1), top-4 siblings with distinct tokens, or sampled q per node."""
    parents = torch.tensor([[-1, -1, -1, 0, 0, 1, 3, 3, 6, -1], [-1, 0, 1, 2, -1, 0, 5, -1, -1, -1]])
    parents = parents[torch.arange(batch) % 2]
    valid = torch.ones_like(parents, dtype=torch.bool)
    valid[1::2, 7:] = False
    depths = torch.zeros_like(parents)
    for i in range(parents.shape[1]):
        depths[:, i] = torch.where(
            parents[:, i] < 0, 1, depths.gather(1, parents[:, i : i + 1].clamp(min=0))[:, 0] + 1
        )
    tokens = torch.randint(0, 12, parents.shape, generator=g)  # a small range: siblings often repeat a token
    q = None
    if sampled:
        q = torch.softmax(torch.randn(*parents.shape, vocab, generator=g) * 2, -1)
        tokens = torch.multinomial(q.view(-1, vocab), 1, generator=g).view(parents.shape)
    return DraftTree(tokens, parents, depths, q=q, valid=valid)


def on(tree: DraftTree, device: str) -> DraftTree:
    moved = {f.name: getattr(tree, f.name) for f in fields(tree)}
    return DraftTree(**{k: None if v is None else v.to(device) for k, v in moved.items()})


def assert_batched_verification_equals_loop(sampled: bool, sampling: Sampling, device: str = "cpu") -> None:
    g = torch.Generator().manual_seed(0)
    verifier, vocab = TreeVerifier(sampling), 40
    accepted = 0
    for trial in range(30):
        tree = random_tree(g, 4, vocab, sampled)
        # Target logits peaked on small ids, so drafted tokens are often accepted and often rejected.
        logits = torch.randn(4, tree.size + 1, vocab, generator=g) * 2 - torch.arange(vocab) * 0.25
        u = torch.rand(4, tree.size + 1, 4, generator=g)
        tree, logits, u = on(tree, device), logits.to(device), u.to(device)
        walks, final = verifier.sample_walks(tree, logits, u)
        for b in range(4):
            path, reached, residual = reference_sample_walk(verifier, tree, logits, u, b)
            assert (walks[b].path, walks[b].reached) == (path, reached), f"trial {trial} row {b}"
            torch.testing.assert_close(final[b], residual, rtol=1e-5, atol=1e-6)
            accepted += len(path)
    assert 0 < accepted < 30 * 4 * 4  # both acceptances and rejections happened


@pytest.mark.parametrize("sampled", [False, True], ids=["top-k tree", "sampled q"])
@pytest.mark.parametrize("sampling", [Sampling(1.0), Sampling(0.7, top_p=0.9)], ids=["T1", "T0.7 top-p"])
def test_batched_sample_verification_equals_the_per_node_loop(sampled: bool, sampling: Sampling) -> None:
    assert_batched_verification_equals_loop(sampled, sampling)
