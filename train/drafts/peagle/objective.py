"""P-EAGLE objective: k slots per position, trained in one forward pass.

For every position t of the sequence (each one an anchor, as at decode time any position can be the last
verified one), the block vLLM drafts from it is: slot 1 = (token t+1, fused target layers at t), the
EAGLE-3 step 0; slots 2..k = (mask token, mask_hidden) at positions t+1..t+k-1. Slot j+1 predicts the token
after position t+1+j, against the target's distribution there restricted to the draft vocabulary, weighed
ttt_decay**j (EAGLE-3's unroll weights, eagle3/objective.py).

Attention is what vLLM's drafting forward gives (the block extends the query causally, llm_base_proposer.py):
slot 1 of anchor t sees slot 1 of anchors <= t (the verified prefix, document-causal when chats are packed);
slot j+1 sees those and slots 2..j+1 of its own anchor, never another anchor's mask slots. That is EAGLE-3's
unrolled mask (unrolled_attention_mask), here over all k slots at once: the slots do not read each other's
outputs, so nothing is unrolled and the (k*L)-long block runs in one forward.
"""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.eagle3.objective import Eagle3Objective, targets_on_draft_vocab, unrolled_attention_mask
from train.modeling.doc_mask import Packing, doc_causal_mask
from train.modeling.target import FrozenTarget, TargetFeatures


def parallel_attention_mask(length: int, slots: int, first: torch.Tensor) -> torch.Tensor:
    """(B, 1, k*L, k*L) bool: query rows and key columns ordered slot-major (slot j's L positions together).
    Slot 0 queries see slot 0 keys through `first` (causal or document-causal); slot j > 0 queries see
    `first`, then themselves and the same anchor's slots 1..j (the diagonal of each)."""
    rows = []
    for j in range(slots):
        seen = unrolled_attention_mask(length, j, first.device, first)  # (B, 1, L, L*(j+1))
        pad = seen.new_zeros(*seen.shape[:-1], length * (slots - 1 - j))
        rows.append(torch.cat([seen, pad], dim=-1))
    return torch.cat(rows, dim=2)


class PEagleObjective(Eagle3Objective):
    """Eagle3Objective's loss and statistics (its __call__), with per_position drafting all slots at once."""

    def slot_logits(
        self,
        draft: nn.Module,
        head: nn.Module,
        target: FrozenTarget,
        input_ids: torch.Tensor,
        features: TargetFeatures,
        packing: Packing | None = None,
    ) -> torch.Tensor:
        """(B, k, L, V_draft), L = T - 1: slot j+1's draft logits for the block anchored at each position."""
        if features.layers is None:
            raise ValueError(
                "a P-EAGLE head needs fused target layers: the feature source was given none (SPEC.target_layers)"
            )
        k = self.steps
        dtype = next(head.parameters()).dtype
        b, length = input_ids.shape[0], input_ids.shape[1] - 1
        dev = input_ids.device
        pos = torch.arange(length, device=dev).expand(b, length)
        first = torch.ones(length, length, dtype=torch.bool, device=dev).tril()[None, None]
        if packing is not None:
            # Position t belongs to feature t's conversation (objectives/eagle.py); a slot whose token lies in
            # the next conversation is masked out of the loss (per_position).
            pos = packing.position_ids[:, :-1]
            first = doc_causal_mask(packing.doc_ids[:, :-1])  # dense: the slots' diagonals need one
        mask = parallel_attention_mask(length, k, first.expand(b, 1, length, length))
        layer_feats = features.layers[:, :-1].to(dtype)
        tokens = input_ids[:, 1:]
        mask_tok = torch.full_like(tokens, int(head.config.mask_token_id))
        all_tokens = torch.cat([tokens, *[mask_tok] * (k - 1)], dim=1)
        all_feats = torch.cat([layer_feats, *[torch.zeros_like(layer_feats)] * (k - 1)], dim=1)
        slot = torch.arange(k, device=dev).repeat_interleave(length)  # (k*L,) slot of each query
        out = draft(
            target.embed(all_tokens).to(dtype),
            position_ids=torch.cat([pos + j for j in range(k)], dim=1),
            attn_mask=mask,
            layer_features=all_feats,
            mask_slots=(slot > 0)[None].expand(b, k * length),
        )
        return head.logits(out).view(b, k, length, -1)

    def per_position(
        self,
        draft: nn.Module,
        head: nn.Module,
        target: FrozenTarget,
        input_ids: torch.Tensor,
        features: TargetFeatures,
        loss_mask: torch.Tensor,
        packing: Packing | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per slot: (per-position soft CE (B, L), mask (B, L), top-1 match (B, L)), L = T - 1."""
        logits_all = self.slot_logits(draft, head, target, input_ids, features, packing)
        d2t = head.d2t
        true_reduced_all, true_top_all = targets_on_draft_vocab(features, d2t)
        return [
            self.step_terms(j, logits_all[:, j], true_reduced_all, true_top_all, d2t, loss_mask, packing)
            for j in range(self.steps)
        ]
