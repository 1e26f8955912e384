"""A budgeted serving policy: the rows of a batch share one cap on drafted tokens per target forward.

Without a budget every row verifies its whole chain or tree, so a target forward reads B * (1 + nodes)
tokens and tau does not depend on the batch size B. Serving engines instead cap the tokens a forward may
verify (vLLM's `max_num_batched_tokens`, SGLang's token budget); under such a cap the rows compete for
drafted slots and tau falls as B grows. This module implements that cap for our engine.

The split (`share_budget`): the `budget` drafted nodes of highest path probability under the draft
(`DraftTree.scores`: log-probability of the node's whole root-to-node path), ranked across all rows of the
batch together, are verified; the rest are dropped. A node's path score is strictly below its parent's, so
the kept set of every row is closed under parents (a valid subtree; a chain keeps a prefix). Each row's
root, its last emitted token, is always verified on top of the budget (it is what plain decoding would
feed the target anyway), so every row emits at least one token per forward and decoding always advances.
Drafts without scores are ranked by depth (shallow first), which is closed under parents too.

Rows then hold different numbers of nodes: the tree is right-padded to the widest row and the padding
marked invalid (`DraftTree.valid`); verification never accepts a padded node, and no real node attends to
one. Dropping nodes from a proposal never changes what verification emits (it is the target's own greedy
token, or an exact sample of its distribution, along whichever path survives), so the policy is lossless.
"""

from __future__ import annotations

import torch

from train.decoding.drafter import DraftTree


def share_budget(tree: DraftTree, budget: int) -> DraftTree:
    """Keep the `budget` best-scored nodes over the whole batch (see the module doc), each row's kept
    nodes first and in their original (topological) order, padding after them."""
    b, n = tree.tokens.shape
    if n == 0 or (tree.valid is None and b * n <= budget):
        return tree  # everything fits: nothing to drop
    dev = tree.tokens.device
    score = tree.scores.float() if tree.scores is not None else -tree.depths.float()
    if tree.valid is not None:
        score = score.masked_fill(~tree.valid, float("-inf"))
    top = score.flatten().topk(min(budget, b * n)).indices
    keep = torch.zeros(b * n, dtype=torch.bool, device=dev).index_fill_(0, top, True).view(b, n)
    if tree.valid is not None:
        keep &= tree.valid  # a budget larger than the real nodes picked some padding
    if tree.q is not None and bool((keep[:, 1:] & ~keep[:, :-1]).any()):
        # q of a node is conditioned on the siblings drawn before it; only a prefix keeps that meaning.
        raise ValueError("a sampled draft (with q) can only be cut to a prefix of its nodes")
    counts = keep.sum(1)
    width = int(counts.max())
    # Kept nodes first, in node order (a stable sort on "dropped"), then as many dropped ones as padding.
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=dev)[None] < counts[:, None]
    new_id = keep.long().cumsum(1) - 1  # a kept node's index in its row of the cut tree
    par = tree.parents.gather(1, order)
    par = torch.where(par >= 0, new_id.gather(1, par.clamp(min=0)), par)
    return DraftTree(
        tokens=tree.tokens.gather(1, order),
        parents=par.masked_fill(~valid, -1),
        depths=tree.depths.gather(1, order).masked_fill(~valid, 1),
        q=None if tree.q is None else tree.q.gather(1, order[..., None].expand(-1, -1, tree.q.shape[-1])),
        scores=None if tree.scores is None else tree.scores.gather(1, order),
        valid=valid,
    )
