"""DFlash drafter: one head forward per step drafts the whole chain.

Verified positions (the target's fused layers at each token the target has read) become context keys and
values in the head's cache; a step's block is [root, mask x k] at the positions after the context, and slot
i's distribution proposes draft token i. Chains only: the slots are drafted independently given the
context, so the chain is each slot's argmax (greedy) or one draw per slot from its own distribution, which
is recorded as q for lossless verification. In tree mode the head drafts its full chain (block_size - 1).
"""

from __future__ import annotations

import torch
from torch import nn

from train.decoding.drafter import CHAIN, DraftSettings, DraftTree
from train.decoding.kv import Slots, block_positions, select_rows
from train.decoding.sampling import sample
from train.decoding.trees import MAX_LOGP
from train.modeling.target import FrozenTarget


class DFlashDrafter:
    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        self.head, self.target = head, target
        self.feature_layers = tuple(head.config.feature_layers)
        self.width = len(self.feature_layers) * target.hidden_size
        self.start(1)

    def start(self, batch: int) -> None:
        dev = self.target.device
        self.cache = self.head.new_cache()
        self.slots = Slots.empty(batch, dev)
        # Verified (feature) positions not yet projected into the cache; padding marked invalid.
        self.pend_feat = torch.zeros(batch, 0, self.width, dtype=self.target.dtype, device=dev)
        self.pend_valid = torch.zeros(batch, 0, dtype=torch.bool, device=dev)

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        self.pend_feat = torch.cat([self.pend_feat, features], 1)
        self.pend_valid = torch.cat([self.pend_valid, valid], 1)

    def draft_length(self, settings: DraftSettings) -> int:
        slots = self.head.config.block_size - 1
        k = settings.draft_length if settings.mode == CHAIN else slots
        if k > slots:
            raise ValueError(
                f"draft_length={k}: this DFlash head drafts at most block_size - 1 = {slots} tokens per step "
                f"(trained with block_size {slots + 1}); use draft_length<={slots}"
            )
        return k

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        k = self.draft_length(settings)
        b, dev, q_len = root.shape[0], root.device, k + 1
        p = self.pend_valid.shape[1]
        ctx_pos = block_positions(self.slots, self.pend_valid)
        start = self.slots.lengths + self.pend_valid.sum(1)  # the root's position
        q_pos = start[:, None] + torch.arange(q_len, device=dev)
        tokens = torch.full((b, q_len), self.head.config.mask_token_id, dtype=torch.long, device=dev)
        tokens[:, 0] = root
        pending = self.pend_valid[:, None, :].expand(b, q_len, p)
        mask = self.slots.mask(torch.ones(b, q_len, q_len, dtype=torch.bool, device=dev), pending)
        out = self.head(
            tokens,
            self.target.embed(tokens),
            q_pos,
            mask,
            layer_features=self.pend_feat if p else None,
            context_positions=ctx_pos,
            cache=self.cache,
        )
        self.slots.append(self.pend_valid)
        self.pend_feat, self.pend_valid = self.pend_feat[:, :0], self.pend_valid[:, :0]
        logits = self.head.logits(out[:, 1:], self.target.lm_head).float()  # (B, k, V): slot i -> token i
        sampling = settings.sampling
        if sampling.greedy:
            step_logp, toks = torch.log_softmax(logits, -1).max(-1)
            q = None
        else:
            q = sampling.probs(logits)
            toks = sample(q, gen)
            step_logp = q.gather(-1, toks[..., None])[..., 0].log()
        ar = torch.arange(k, device=dev)
        return DraftTree(
            tokens=toks,
            parents=(ar - 1).expand(b, k).clone(),
            depths=(ar + 1).expand(b, k).clone(),
            q=q,
            scores=step_logp.clamp(max=MAX_LOGP).cumsum(1),
        )

    def select_rows(self, rows: torch.Tensor) -> None:
        select_rows(self.cache, rows)
        self.slots.select_rows(rows)
        self.pend_feat, self.pend_valid = (
            self.pend_feat.index_select(0, rows),
            self.pend_valid.index_select(0, rows),
        )
