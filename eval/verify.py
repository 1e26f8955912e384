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
        kids = _tree_children(tree)
        if self.sampling.greedy:
            argmax = logits.argmax(-1).tolist()
            return [
                self.greedy_walk(t, k, a) for t, k, a in zip(tree.tokens.tolist(), kids, argmax, strict=True)
            ]
        u = torch.rand((*logits.shape[:2], _width(kids)), generator=gen, device=logits.device)
        walks, final = self.sample_walks(tree, logits, u)
        for walk, token in zip(walks, sample(final, gen).tolist(), strict=True):
            walk.token = token
        return walks

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

    def sample_walks(
        self, tree: DraftTree, logits: torch.Tensor, u: torch.Tensor
    ) -> tuple[list[Walk], torch.Tensor]:
        """Every row's walk (token unset) and the (B, V) distribution its last token is drawn from, given
        u[b, n, j]: the uniform that decides child j (in node order) of node n (0 = root, i + 1 = node i).

        All rows walk down together, one level per round: the target's distribution at each row's current
        node (one call for all rows), then its children in order, each judged for all rows at once under the
        residual left by the siblings rejected before it; one device sync per level reads the decisions.
        Only the nodes on the walks are computed, as in the per-node loop this replaced
        (tests/reference_verify.py), which synced once per child and row."""
        b = logits.shape[0]
        kids = _tree_children(tree)
        width = _width(kids)
        dev = logits.device
        # slot[b, n, j]: node index of child j of node n; -1 where n has fewer children.
        padded = [[c + [-1] * (width - len(c)) for c in row] for row in kids]
        slot = torch.tensor(padded, dtype=torch.long, device=dev)
        walks = [Walk([], -1, 0) for _ in range(b)]
        final = torch.empty(b, logits.shape[-1], device=dev)
        rows, at = list(range(b)), [0] * b  # rows still walking, and the node each stands on
        while rows:
            r_t, at_t = torch.tensor(rows, device=dev), torch.tensor(at, device=dev)
            p = self.sampling.probs(logits[r_t, at_t])  # (R, V)
            child = slot[r_t, at_t].clamp(min=0)  # (R, width); padded slots read node 0, never used
            has = slot[r_t, at_t] >= 0
            x = tree.tokens[r_t[:, None], child] if tree.size else child
            q = None if tree.q is None or not tree.size else tree.q  # (B, N, V)
            taken = torch.full((len(rows),), -1, dtype=torch.long, device=dev)  # accepted child slot
            for j in range(width):
                qx = None if q is None else q[r_t, child[:, j], x[:, j]]
                ok = (u[r_t, at_t, j] < self.accept_probability(p.gather(1, x[:, j, None])[:, 0], qx)) & has[
                    :, j
                ]
                taken = torch.where((taken < 0) & ok, j, taken)
                rejected = has[:, j] & (taken < 0)  # these rows go on to the next sibling, or stop here
                if dev.type == "cpu":  # no sync cost on CPU: update only the rows that rejected
                    sub = rejected.nonzero()[:, 0]
                    qj = None if q is None else q[r_t[sub], child[sub, j]]
                    p[sub] = self.residual(p[sub], x[sub, j], qj)
                else:  # on a GPU one masked update over all rows beats a sync per sibling
                    qj = None if q is None else q[r_t, child[:, j]]
                    p = torch.where(rejected[:, None], self.residual(p, x[:, j], qj), p)
            still, next_at, done = [], [], []
            for i, (r, j) in enumerate(zip(rows, taken.tolist(), strict=True)):  # the level's one sync
                if j < 0:  # every child rejected (or none): the token comes from what is left of p
                    walks[r].reached = len(walks[r].path) + (1 if kids[r][at[i]] else 0)
                    done.append(i)
                    continue
                walks[r].path.append(kids[r][at[i]][j])
                still.append(r)
                next_at.append(walks[r].path[-1] + 1)
            if done:
                final[torch.tensor([rows[i] for i in done], device=dev)] = p[torch.tensor(done, device=dev)]
            rows, at = still, next_at
        return walks, final

    @staticmethod
    def accept_probability(px: torch.Tensor, qx: torch.Tensor | None) -> torch.Tensor:
        """Per row: the target's probability p(x) of the proposal and the draft's q(x) (None: x was a
        deterministic pick, a point mass): min(1, p(x) / q(x))."""
        if qx is None:
            return px
        return (px / qx.clamp(min=1e-30)).clamp(max=1.0)

    @staticmethod
    def residual(p: torch.Tensor, x: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        """The target's distribution given that the proposal drawn from q (a point mass on x if None) was
        rejected: normalise(max(p - q, 0)), over the last dim of (..., V)."""
        if q is None:
            r = p.scatter(-1, x[..., None], 0.0)
        else:
            r = (p - q).clamp(min=0.0)
        total = r.sum(-1, keepdim=True)
        # total == 0 only when p <= q everywhere, i.e. p == q, where rejection has probability 0; rounding
        # can still get here, and p itself is then the right distribution.
        return torch.where(total > 0, r / total.clamp(min=1e-30), p)


def _tree_children(tree: DraftTree) -> list[list[list[int]]]:
    """Per row, `_children` of its tree: [root's, node 0's, ...]."""
    valid = [None] * tree.tokens.shape[0] if tree.valid is None else tree.valid.tolist()
    return [_children(p, v) for p, v in zip(tree.parents.tolist(), valid, strict=True)]


def _width(kids: list[list[list[int]]]) -> int:
    """The most children any node (or root) has, at least 1: the sibling slots judged per node."""
    return max([1] + [len(c) for row in kids for c in row])
