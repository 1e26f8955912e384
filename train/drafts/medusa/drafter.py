"""Medusa drafter: K heads on the target's last verified hidden state propose the K tokens after the root.

Head k's proposals do not depend on the tokens chosen by heads < k (that is Medusa's design), so a chain is
each head's top token, and a tree is EAGLE-2's dynamic tree over the heads' distributions: every node at
depth d gets head d's top-k tokens as children, and the `budget` nodes of highest path probability (the
product of the heads' probabilities along the path) are kept. No draft cache.
"""

from __future__ import annotations

import torch
from torch import nn

from train.decoding.drafter import CHAIN, DraftSettings, DraftTree
from train.decoding.trees import MAX_LOGP, dynamic_tree
from train.modeling.target import FrozenTarget


class MedusaDrafter:
    feature_layers: tuple[int, ...] = (-1,)

    def __init__(self, heads: nn.Module, target: FrozenTarget) -> None:
        self.heads, self.target = heads, target
        self.start(1)

    def start(self, batch: int) -> None:
        self.last = torch.zeros(
            batch, self.target.hidden_size, dtype=self.target.dtype, device=self.target.device
        )

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        n = valid.sum(1)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        newest = features[rows, (n - 1).clamp(min=0)]
        self.last = torch.where((n > 0)[:, None], newest, self.last)

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        hidden = self.heads(self.last[:, None])  # (K, B, 1, H)
        logits = self.heads.logits(hidden, self.target.lm_head)[:, :, 0].transpose(0, 1)  # (B, K, V)
        b, k_heads = logits.shape[:2]
        if settings.mode == CHAIN:
            k = min(settings.draft_length, k_heads)
            sampling = settings.sampling
            if sampling.greedy:
                step_logp, tokens = torch.log_softmax(logits[:, :k].float(), -1).max(-1)
                q = None
            else:
                q = sampling.probs(logits[:, :k])
                tokens = torch.multinomial(q.flatten(0, 1), 1, generator=gen).view(b, k)
                step_logp = q.gather(-1, tokens[..., None])[..., 0].log()
            ar = torch.arange(k, device=root.device)
            scores = step_logp.clamp(max=MAX_LOGP).cumsum(1)  # a path's log-probability, as in draft_chain
            parents, depths = (ar - 1).expand(b, k).clone(), (ar + 1).expand(b, k).clone()
            return DraftTree(tokens, parents, depths, q, scores)

        def children(
            tokens: torch.Tensor, parent: torch.Tensor, visible: torch.Tensor, depth: int
        ) -> torch.Tensor:
            # The children of any node at `depth` come from head `depth`, whatever the node's own token.
            return logits[:, depth, None].expand(-1, tokens.shape[1], -1)

        depth = min(settings.depth, k_heads)  # head k proposes depth k+1: no head, no deeper level
        return dynamic_tree(logits[:, 0], children, depth, settings.topk, settings.budget)

    def select_rows(self, rows: torch.Tensor) -> None:
        self.last = self.last.index_select(0, rows)
