"""Building draft trees: chains, EAGLE-2 dynamic trees, static (Medusa-style) trees, and tree attention.

`draft_chain` and `dynamic_tree` are generic over the drafter: they call `step(tokens, parent, visible,
depth) -> logits` to run the draft on new nodes, so any drafter that can attend over a tree (EAGLE-1/2/3, a
dense LM with a 4D mask) gets both shapes from the same search. A draft over a reduced vocabulary (EAGLE-3)
passes `vocab`: its logits are searched as they are and only the picked ids become target ids (vocab.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from train.decoding.drafter import DraftTree
from train.decoding.sampling import Sampling, sample
from train.decoding.vocab import ReducedVocab

# step(tokens (B, K), parent (B, K), visible (B, K, E + K), depth) -> logits (B, K, V)
#   tokens: nodes to run the draft on (target ids), all at `depth` (1 = child of the root);
#   logits: over the draft's vocabulary (the target's, or the reduced one `vocab` maps);
#   parent: index of each node's parent among the nodes expanded before (-1 = the root);
#   visible: which expanded nodes (the E earlier ones, then these K) each node may attend to: its
#   ancestors and itself. The drafter appends the K nodes to its scratch cache in this order.
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]

# Path scores are log-probabilities; capping each step below 0 keeps a child strictly below its parent, so
# reranking by score can never keep a node without its parent (a prob-1 step in float32 would tie).
MAX_LOGP = -1e-6


def draft_chain(
    root_logits: torch.Tensor,
    step: Step,
    k: int,
    sampling: Sampling,
    gen,  # noqa: ANN001 - torch.Generator | None
    vocab: ReducedVocab | None = None,
) -> DraftTree:
    """k tokens in a line: argmax when greedy, else drawn from the draft's own (temperature, top-p)
    distribution, which is recorded as q for the acceptance test (over the target's vocabulary)."""
    b, dev = root_logits.shape[0], root_logits.device
    logits, toks, qs, scores = root_logits, [], [], []
    path = torch.zeros(b, device=dev)
    for d in range(1, k + 1):
        if sampling.greedy:
            step_logp, tok = torch.log_softmax(logits.float(), -1).max(-1)
        else:
            q = sampling.probs(logits)
            tok = sample(q, gen)
            qs.append(q)
            step_logp = q.gather(-1, tok[:, None])[:, 0].log()
        path = path + step_logp.clamp(max=MAX_LOGP)
        if vocab is not None:
            tok = vocab.to_target(tok)
        toks.append(tok)
        scores.append(path)
        if d < k:
            parent = torch.full((b, 1), d - 2, dtype=torch.long, device=dev)
            visible = torch.ones(b, 1, d, dtype=torch.bool, device=dev)  # every earlier node is an ancestor
            logits = step(tok[:, None], parent, visible, d)[:, 0]
    ar = torch.arange(k, device=dev)
    q = torch.stack(qs, 1) if qs else None
    if q is not None and vocab is not None:
        q = vocab.widen(q)  # once per proposal: verification reads q at target ids
    return DraftTree(
        tokens=torch.stack(toks, 1),
        parents=(ar - 1).expand(b, k).clone(),
        depths=(ar + 1).expand(b, k).clone(),
        q=q,
        scores=torch.stack(scores, 1),
    )


def _top_children(
    logits: torch.Tensor, topk: int, vocab: ReducedVocab | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities, target ids) of the `topk` most likely next tokens, the log-probabilities capped
    at MAX_LOGP (only the k picked values are capped, not the whole vocabulary)."""
    val, tok = torch.log_softmax(logits.float(), -1).topk(topk, dim=-1)
    return val.clamp(max=MAX_LOGP), tok if vocab is None else vocab.to_target(tok)


def dynamic_tree(
    root_logits: torch.Tensor,
    step: Step,
    depth: int,
    topk: int,
    budget: int,
    vocab: ReducedVocab | None = None,
) -> DraftTree:
    """EAGLE-2: at each level expand the `topk` nodes with the highest path probability (product of the
    draft's probabilities from the root), give each its `topk` most likely children, and finally keep the
    `budget` nodes of highest path probability over all levels. One draft forward per level.

    Every level's shape is fixed (level 1: topk nodes; each later level: topk * topk candidates, the children
    of the topk nodes expanded from the level above), so a node's id, level and parent follow from the
    top-k indices by arithmetic: a handful of batched tensor ops per level, no per-node Python, no lookups,
    no device syncs, and the ancestor table is allocated once."""
    b, dev = root_logits.shape[0], root_logits.device
    k, wide = topk, topk * topk  # nodes expanded per level; candidates per level after the first
    # Among the expanded nodes (k per level, in order): anc[:, i, j] = node j is node i or its ancestor. The
    # identity is every node's "itself"; each level fills its rows' ancestors from its parents' rows.
    n_exp = (depth - 1) * k
    anc = torch.eye(n_exp, dtype=torch.bool, device=dev).expand(b, n_exp, n_exp).clone()
    front_score, front_tok = _top_children(root_logits, topk, vocab)  # the newest level's nodes
    scores, toks, expanded = [front_score], [front_tok], []
    par_e = torch.full((b, k), -1, dtype=torch.long, device=dev)  # parents among expanded nodes (-1: root)
    for d in range(2, depth + 1):
        e = (d - 2) * k  # nodes expanded before this level
        s, j = front_score.topk(k, dim=-1)
        # Node ids: level 1 is 0..topk-1, level d >= 2 the `wide` ids from topk + (d - 2) * wide.
        expanded.append(j + (0 if d == 2 else topk + (d - 3) * wide))
        if e:  # candidate j of the level above is a child of that level's expanded node j // topk
            up = torch.div(j, topk, rounding_mode="floor")
            par_e = up + (e - k)
            anc[:, e : e + k, :e] = anc[:, e - k : e, :e].gather(1, up[..., None].expand(b, k, e))
        logits = step(front_tok.gather(1, j), par_e, anc[:, e : e + k, : e + k], d - 1)
        c_score, c_tok = _top_children(logits, topk, vocab)  # (B, k, topk)
        front_score, front_tok = (c_score + s[..., None]).flatten(1), c_tok.flatten(1)
        scores.append(front_score)
        toks.append(front_tok)
    all_score = torch.cat(scores, 1)
    keep = all_score.topk(min(budget, all_score.shape[1]), dim=-1).indices.sort(-1).values  # parents first
    # Node id n >= topk is the child of expanded node number (n - topk) // topk (in expansion order).
    up = torch.div(keep - topk, topk, rounding_mode="floor")
    deep = keep >= topk
    if expanded:
        parents = torch.cat(expanded, 1).gather(1, up.clamp(min=0)).masked_fill_(~deep, -1)
    else:
        parents = torch.full_like(keep, -1)
    # A child scores strictly below its parent (MAX_LOGP), so the kept set holds every kept node's parent;
    # `keep` ascends, so a parent's new index is its rank in `keep`.
    new_par = torch.searchsorted(keep, parents).masked_fill_(~deep, -1)
    depths = torch.where(deep, 2 + torch.div(keep - topk, wide, rounding_mode="floor"), 1)
    return DraftTree(torch.cat(toks, 1).gather(1, keep), new_par, depths, scores=all_score.gather(1, keep))


def static_tree(candidates: torch.Tensor, paths: Sequence[Sequence[int]]) -> DraftTree:
    """A fixed tree shape filled from per-depth top-k lists (Medusa: head d's top-k tokens).

    candidates (B, D, K): token ids ranked by head d. A path (i0, i1, ...) is the node whose tokens are
    head 0's i0-th, head 1's i1-th, ...; every prefix of a path must itself be a path.
    """
    order = sorted((tuple(p) for p in paths), key=lambda p: (len(p), p))
    index = {p: i for i, p in enumerate(order)}
    if len(index) != len(order) or any(len(p) == 0 for p in order):
        raise ValueError("static tree paths must be distinct and non-empty")
    missing = [p for p in order if len(p) > 1 and p[:-1] not in index]
    if missing:
        raise ValueError(f"static tree paths {missing[:3]} lack their parent paths")
    b, dev = candidates.shape[0], candidates.device
    d_idx = torch.tensor([len(p) - 1 for p in order], device=dev)
    k_idx = torch.tensor([p[-1] for p in order], device=dev)
    par = torch.tensor([index[p[:-1]] if len(p) > 1 else -1 for p in order], device=dev)
    return DraftTree(
        candidates[:, d_idx, k_idx], par.expand(b, -1).clone(), (d_idx + 1).expand(b, -1).clone()
    )


def is_chain(parents: torch.Tensor) -> bool:
    """Every row's nodes form one line below the root (node i's parent is i - 1): causal attention."""
    ar = torch.arange(parents.shape[1], device=parents.device)
    return bool((parents == ar - 1).all())


def tree_visibility(parents: torch.Tensor, max_depth: int | None = None) -> torch.Tensor:
    """(B, N) parents -> (B, 1+N, 1+N) bool over [root, nodes]: entry (i, j) is True exactly when j is i
    itself or one of its ancestors (the root is everyone's ancestor)."""
    b, n = parents.shape
    dev = parents.device
    up = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=dev), parents + 1], 1)  # root's parent: root
    vis = torch.eye(n + 1, dtype=torch.bool, device=dev).repeat(b, 1, 1)
    cur = torch.arange(n + 1, device=dev).expand(b, n + 1)
    for _ in range(n if max_depth is None else max_depth):
        cur = up.gather(1, cur)
        vis.scatter_(2, cur[..., None], True)
    return vis
