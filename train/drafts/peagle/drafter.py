"""P-EAGLE drafter: one head forward drafts a chain of k tokens, as vLLM's parallel drafting does.

The forward's block is the EAGLE-3 drafter's verified pairs (tokens the target has read, each with the fused
target layers before it, and the root with the newest ones), then k-1 mask slots: the mask token with
mask_hidden, at the positions after the root's. Causal attention over the block, as vLLM extends the query
(llm_base_proposer.py, copy_and_expand_eagle_inputs). The root's output proposes draft token 1 and mask
slot i's proposes token i+1; each is the argmax (greedy) or one draw from its own distribution, recorded as q
for lossless verification. Only the verified pairs stay in the cache: the mask slots' keys are dropped (vLLM
overwrites them next step, before any query can see them).

Trees: the same head drafts step by step as EAGLE-3 (Eagle3Drafter's dynamic tree); vLLM has no trees.
"""

from __future__ import annotations

import torch

from train.decoding.drafter import CHAIN, DraftSettings, DraftTree
from train.decoding.kv import block_positions, causal_block, truncate
from train.decoding.trees import draft_chain
from train.drafts.eagle3.drafter import Eagle3Drafter


class PEagleDrafter(Eagle3Drafter):
    def draft_length(self, settings: DraftSettings) -> int:
        k, trained = settings.draft_length, self.head.inner.config.parallel_tokens
        if k > trained:
            raise ValueError(
                f"draft_length={k}: this P-EAGLE head was trained to draft {trained} tokens per forward "
                f"(draft.ttt_steps); use draft_length<={trained}"
            )
        return k

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        if settings.mode != CHAIN:
            return super().propose(root, settings, gen)
        k = self.draft_length(settings)
        if not bool(self.has_carry.all()):
            raise RuntimeError("PEagleDrafter.propose before any verified feature was observed")
        head = self.head.inner
        b, dev = root.shape[0], root.device
        toks = torch.cat([self.pend_tok, root[:, None]], 1)
        feats = torch.cat([self.pend_feat, self.carry[:, None]], 1)
        valid = torch.cat([self.pend_valid, torch.ones_like(root, dtype=torch.bool)[:, None]], 1)
        n = toks.shape[1]
        # k-1 mask slots after the root: their features are replaced by mask_hidden inside the head.
        toks_all = torch.cat([toks, toks.new_full((b, k - 1), int(head.config.mask_token_id))], 1)
        feats_all = torch.cat([feats, feats.new_zeros(b, k - 1, feats.shape[-1])], 1)
        valid_all = torch.cat([valid, valid.new_ones(b, k - 1)], 1)
        mask_slots = torch.arange(n + k - 1, device=dev)[None].expand(b, -1) >= n
        out = head(
            self.target.embed(toks_all),
            position_ids=block_positions(self.slots, valid_all),
            cache=self.cache,
            attn_mask=self.slots.mask(causal_block(valid_all)),
            layer_features=feats_all,
            mask_slots=mask_slots,
        )
        self.slots.append(valid)
        truncate(self.cache, self.slots.size)  # keep the verified pairs only
        self.pend_tok, self.pend_feat, self.pend_valid = toks[:, :0], feats[:, :0], valid[:, :0]
        self.has_carry = torch.zeros_like(self.has_carry)
        logits = head.logits(out[:, n - 1 :])  # (B, k, V_draft): the root, then each mask slot

        # Slot d+1 has its own distribution: no slot reads a drafted token, so the chain's "step" only picks it.
        def step(
            tokens: torch.Tensor, parent: torch.Tensor, visible: torch.Tensor, depth: int
        ) -> torch.Tensor:
            return logits[:, depth : depth + 1]

        return draft_chain(logits[:, 0], step, k, settings.sampling, gen, self.reduced_vocab())
