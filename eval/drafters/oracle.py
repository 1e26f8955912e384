"""A drafter that drafts with the target itself (recomputed from scratch, no cache): a perfect draft.

At temperature 0 every token it proposes along the target's greedy path is accepted, so the engine's tau
ceiling, cache compaction over long accepted paths and batch handling can be tested without a trained
draft. `distort` != 1 reshapes its distribution (logits / distort: < 1 sharpens, > 1 flattens) so that,
when sampling, its proposals differ from the target's and the acceptance rule is exercised; top-k order
is unchanged.
"""

from __future__ import annotations

import torch

from train.decoding.drafter import CHAIN, DraftSettings, DraftTree
from train.decoding.trees import draft_chain, dynamic_tree
from train.modeling.target import FrozenTarget


class TargetDrafter:
    feature_layers: tuple[int, ...] = ()

    def __init__(self, target: FrozenTarget, distort: float = 1.0) -> None:
        self.target, self.distort = target, distort
        self.start(1)

    def start(self, batch: int) -> None:
        self.history: list[list[int]] = [[] for _ in range(batch)]
        self.root_seen = False

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        for row, toks, ok in zip(self.history, tokens.tolist(), valid.tolist(), strict=True):
            row.extend(t for t, v in zip(toks, ok, strict=True) if v)
        if self.root_seen:  # the root was added in propose(); the target's copy of it arrives here
            for row, n in zip(self.history, valid.sum(1).tolist(), strict=True):
                if n:
                    del row[-n]
            self.root_seen = False

    def _logits(self, seqs: list[list[int]]) -> torch.Tensor:
        dev = self.target.device
        n = max(len(s) for s in seqs)
        # Left-padded so only the last position's logits are computed; positions skip the padding.
        ids = torch.zeros(len(seqs), n, dtype=torch.long, device=dev)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, n - len(s) :], mask[i, n - len(s) :] = torch.tensor(s, device=dev), 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.target.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
        return out.logits[:, -1].float() / self.distort

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        for row, r in zip(self.history, root.tolist(), strict=True):
            row.append(r)
        self.root_seen = True
        expanded: list[list[int]] = [[] for _ in self.history]  # token of each expanded node, per row

        def step(
            tokens: torch.Tensor, parent: torch.Tensor, visible: torch.Tensor, depth: int
        ) -> torch.Tensor:
            b, k = tokens.shape
            e = visible.shape[2] - k
            seqs, vis, toks = [], visible[:, :, :e].tolist(), tokens.tolist()
            for i in range(b):
                for j in range(k):
                    anc = [t for t, v in zip(expanded[i], vis[i][j], strict=True) if v]
                    seqs.append(self.history[i] + anc + [toks[i][j]])
            for i in range(b):
                expanded[i].extend(tokens[i].tolist())
            return self._logits(seqs).view(b, k, -1)

        with torch.inference_mode():
            root_logits = self._logits(self.history)
            if settings.mode == CHAIN:
                return draft_chain(root_logits, step, settings.draft_length, settings.sampling, gen)
            return dynamic_tree(root_logits, step, settings.depth, settings.topk, settings.budget)

    def select_rows(self, rows: torch.Tensor) -> None:
        self.history = [self.history[i] for i in rows.tolist()]
