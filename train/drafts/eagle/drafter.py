"""EAGLE-1/2 drafter: the head reads (embedding of token t+1, target feature at t) and predicts the feature at
t+1, whose LM-head distribution proposes token t+2. Drafted nodes feed their *predicted* feature to their
children; only pairs whose token and feature the target has verified are ever kept in the head's cache.
"""

from __future__ import annotations

import torch
from torch import nn

from train.decoding.drafter import CHAIN, DraftSettings, DraftTree
from train.decoding.kv import Slots, block_positions, causal_block, select_rows, truncate
from train.decoding.trees import draft_chain, dynamic_tree
from train.decoding.vocab import ReducedVocab
from train.drafts.eagle.head import EagleHead, EagleHeadConfig
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget


class EagleDrafter:
    feature_layers: tuple[int, ...] = (-1,)

    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        self.head, self.target = head, target
        self.start(1)

    def start(self, batch: int) -> None:
        dev, h = self.target.device, self.target.hidden_size
        self.cache = self.head.new_cache()
        self.slots = Slots.empty(batch, dev)
        # Verified (token, feature) pairs not yet run through the head; padding marked invalid.
        self.pend_tok = torch.zeros(batch, 0, dtype=torch.long, device=dev)
        self.pend_feat = torch.zeros(batch, 0, h, dtype=self.target.dtype, device=dev)
        self.pend_valid = torch.zeros(batch, 0, dtype=torch.bool, device=dev)
        # The newest verified feature waits for the token after it, which is only known later.
        self.carry = torch.zeros(batch, h, dtype=self.target.dtype, device=dev)
        self.has_carry = torch.zeros(batch, dtype=torch.bool, device=dev)

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        b, t = tokens.shape
        prev = torch.cat([self.carry[:, None], features[:, :-1]], 1)
        # tokens[:, 0] pairs with the carried feature; without one (start, or right after propose consumed
        # the root's pair) that token's pair is already in the cache or has no feature before it.
        first = torch.cat([self.has_carry[:, None], valid.new_ones(b, t - 1)], 1)
        n = valid.sum(1)
        last = features[torch.arange(b, device=tokens.device), (n - 1).clamp(min=0)]
        self.carry = torch.where((n > 0)[:, None], last, self.carry)
        self.has_carry = self.has_carry | (n > 0)
        self.pend_tok = torch.cat([self.pend_tok, tokens], 1)
        self.pend_feat = torch.cat([self.pend_feat, prev], 1)
        self.pend_valid = torch.cat([self.pend_valid, valid & first], 1)

    def _run(
        self, tokens: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, verified: bool
    ) -> torch.Tensor:
        """verified: feats are the target's (committed positions), else the head's own predictions (tree
        nodes); the same input here, not for EAGLE-3 (drafter.py there)."""
        return self.head(self.target.embed(tokens), feats, position_ids=pos, cache=self.cache, attn_mask=mask)

    def reduced_vocab(self) -> ReducedVocab | None:
        """None: the head's logits are over the target's vocabulary (EAGLE-1/2 use the target's LM head)."""
        return None

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        if not bool(self.has_carry.all()):
            raise RuntimeError("EagleDrafter.propose before any verified feature was observed")
        # All pending pairs plus (root, newest feature), which is verified too: commit them in one forward.
        toks = torch.cat([self.pend_tok, root[:, None]], 1)
        feats = torch.cat([self.pend_feat, self.carry[:, None]], 1)
        valid = torch.cat([self.pend_valid, torch.ones_like(root, dtype=torch.bool)[:, None]], 1)
        mask = self.slots.mask(causal_block(valid))
        out = self._run(toks, feats, mask, block_positions(self.slots, valid), verified=True)
        self.slots.append(valid)
        self.pend_tok, self.pend_feat, self.pend_valid = toks[:, :0], feats[:, :0], valid[:, :0]
        self.has_carry = torch.zeros_like(self.has_carry)
        committed = self.slots.size
        node_out = [out[:, -1:]]  # predicted features: [root, expanded nodes in order]

        def step(
            tokens: torch.Tensor, parent: torch.Tensor, visible: torch.Tensor, depth: int
        ) -> torch.Tensor:
            b, k = tokens.shape
            outs = torch.cat(node_out, 1)
            parent_feat = outs.gather(1, (parent + 1)[..., None].expand(b, k, outs.shape[-1]))
            mask = self.slots.nodes_mask(visible)
            pos = (self.slots.lengths[:, None] + depth - 1).expand(b, k)
            pred = self._run(tokens, parent_feat, mask, pos, verified=False)
            node_out.append(pred)
            return self.head.logits(pred, self.target.lm_head)

        root_logits = self.head.logits(out[:, -1], self.target.lm_head)
        vocab = self.reduced_vocab()
        if settings.mode == CHAIN:
            tree = draft_chain(root_logits, step, settings.draft_length, settings.sampling, gen, vocab)
        else:
            tree = dynamic_tree(root_logits, step, settings.depth, settings.topk, settings.budget, vocab)
        truncate(self.cache, committed)  # drop the tree's scratch positions
        return tree

    def select_rows(self, rows: torch.Tensor) -> None:
        select_rows(self.cache, rows)
        self.slots.select_rows(rows)
        for name in ("pend_tok", "pend_feat", "pend_valid", "carry", "has_carry"):
            setattr(self, name, getattr(self, name).index_select(0, rows))


def random_eagle_head(target: FrozenTarget) -> EagleHead:
    """An untrained one-layer EAGLE head shaped like one target layer: the floor any trained draft must beat."""
    return EagleHead(EagleHeadConfig(**attention_dims(target.model.config), vocab_size=target.vocab_size))
