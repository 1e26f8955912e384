"""The per-node sampled verification that eval/verify.py replaced (a Python loop with a device sync per child),
kept as the reference its batched version must equal (tests/test_hot_paths.py) and as the "before" of
tests/bench/bench_verify_sampling.py. The only change from the original: the uniform for child j of node n is
read from a table `u[b, n, j]` instead of drawn, and the walk returns the distribution its last token is drawn
from instead of drawing it, so that both versions can be compared on the same randomness."""

from __future__ import annotations

import torch

from eval.verify import TreeVerifier, _children
from train.decoding.drafter import DraftTree


def accept_probability(p: torch.Tensor, x: int, q: torch.Tensor | None) -> float:
    if q is None:
        return float(p[x])
    return min(1.0, float(p[x]) / max(float(q[x]), 1e-30))


def residual(p: torch.Tensor, x: int, q: torch.Tensor | None) -> torch.Tensor:
    if q is None:
        r = p.clone()
        r[x] = 0.0
    else:
        r = (p - q).clamp(min=0.0)
    total = float(r.sum())
    return r / total if total > 0 else p


def reference_sample_walk(
    verifier: TreeVerifier, tree: DraftTree, logits: torch.Tensor, u: torch.Tensor, b: int
) -> tuple[list[int], int, torch.Tensor]:
    """Row b's walk: (accepted node indices, positions reached, distribution of the token after the path)."""
    tokens, parents = tree.tokens[b].tolist(), tree.parents[b].tolist()
    kids = _children(parents, None if tree.valid is None else tree.valid[b].tolist())
    q = None if tree.q is None else tree.q[b]
    path: list[int] = []
    at = 0
    while True:
        p = verifier.sampling.probs(logits[b, at])
        accepted = None
        for j, c in enumerate(kids[at]):
            x, qc = tokens[c], None if q is None else q[c]
            if float(u[b, at, j]) < accept_probability(p, x, qc):
                accepted = c
                break
            p = residual(p, x, qc)
        if accepted is None:
            return path, len(path) + (1 if kids[at] else 0), p
        path.append(accepted)
        at = accepted + 1
