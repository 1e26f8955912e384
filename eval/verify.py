"""Verification of a draft tree against the target's logits from one forward: which path to keep.

Greedy (temperature 0): follow the child whose token equals the target's argmax; the first node without
such a child ends the walk and the argmax there is the bonus token. Output = the target's greedy output.

Sampling: the standard speculative-sampling rule (Leviathan et al. / Chen et al.), applied recursively over
the siblings of each node (SpecInfer / EAGLE): with p the target's distribution at the current node, try the
children in order; child x, drawn from q, is accepted with probability min(1, p(x) / q(x)); on rejection
p <- normalise(max(p - q, 0)) and the next sibling is tried against that residual. A deterministic child
(top-k, no q) is a point mass: accepted with probability p(x), else p(x) is zeroed. When no child is
accepted, the token is sampled from what is left of p. Each emitted token is then distributed exactly as
the target's own sampling: it is a sample from p, drawn in pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from train.decoding.drafter import DraftTree
from train.decoding.sampling import Sampling, sample


@dataclass
class Walk:
    path: list[int]  # accepted node indices, root to leaf
    token: int  # the target's token after the path (the bonus token, or the resample after a rejection)
    reached: int  # draft positions (depths) the walk tested: len(path), +1 when the last node had children


def _children(parents: list[int], valid: list[bool] | None = None) -> list[list[int]]:
    """children[0] = the root's, children[i + 1] = node i's, in node order (the drafter's ranking).
    Padding nodes (valid False, see `DraftTree.valid`) are nobody's children: never tried, never accepted."""
    kids: list[list[int]] = [[] for _ in range(len(parents) + 1)]
    for i, p in enumerate(parents):
        if valid is None or valid[i]:
            kids[p + 1].append(i)
    return kids


class TreeVerifier:
    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling

    def __call__(self, tree: DraftTree, logits: torch.Tensor, gen: torch.Generator | None) -> list[Walk]:
        """logits (B, 1 + N, V): the target's output at [root, node 0, ..., node N-1]."""
        tokens, parents = tree.tokens.tolist(), tree.parents.tolist()
        valid = [None] * len(tokens) if tree.valid is None else tree.valid.tolist()
        kids = [_children(p, v) for p, v in zip(parents, valid, strict=True)]
        if self.sampling.greedy:
            argmax = logits.argmax(-1).tolist()
            return [self.greedy_walk(t, k, a) for t, k, a in zip(tokens, kids, argmax, strict=True)]
        return [
            self.sample_walk(tokens[b], kids[b], logits[b], None if tree.q is None else tree.q[b], gen)
            for b in range(len(tokens))
        ]

    @staticmethod
    def greedy_walk(tokens: list[int], kids: list[list[int]], argmax: list[int]) -> Walk:
        path: list[int] = []
        at = 0  # index into [root, nodes...]
        while True:
            want = argmax[at]
            nxt = next((c for c in kids[at] if tokens[c] == want), None)
            if nxt is None:
                return Walk(path, want, len(path) + (1 if kids[at] else 0))
            path.append(nxt)
            at = nxt + 1

    def sample_walk(
        self,
        tokens: list[int],
        kids: list[list[int]],
        logits: torch.Tensor,
        q: torch.Tensor | None,
        gen: torch.Generator | None,
    ) -> Walk:
        path: list[int] = []
        at = 0
        while True:
            p = self.sampling.probs(logits[at])
            accepted = None
            for c in kids[at]:
                x, qc = tokens[c], None if q is None else q[c]
                u = float(torch.rand((), generator=gen, device=p.device))
                if u < self.accept_probability(p, x, qc):
                    accepted = c
                    break
                p = self.residual(p, x, qc)
            if accepted is None:
                return Walk(path, int(sample(p, gen)), len(path) + (1 if kids[at] else 0))
            path.append(accepted)
            at = accepted + 1

    @staticmethod
    def accept_probability(p: torch.Tensor, x: int, q: torch.Tensor | None) -> float:
        if q is None:
            return float(p[x])
        return min(1.0, float(p[x]) / max(float(q[x]), 1e-30))

    @staticmethod
    def residual(p: torch.Tensor, x: int, q: torch.Tensor | None) -> torch.Tensor:
        """The target's distribution given that the proposal drawn from q (a point mass on x if None) was
        rejected: normalise(max(p - q, 0))."""
        if q is None:
            r = p.clone()
            r[x] = 0.0
        else:
            r = (p - q).clamp(min=0.0)
        total = float(r.sum())
        # total == 0 only when p <= q everywhere, i.e. p == q, where rejection has probability 0; rounding
        # can still get here, and p itself is then the right distribution.
        return r / total if total > 0 else p
