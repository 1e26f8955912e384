"""DFlash objective: every anchored block of a row in one forward (train/drafts/dflash/blocks.py), each mask
slot's divergence to the target's distribution at its position, weighted per slot.

loss = sum over valid slots of w_i * divergence / sum of w_i over the same slots (a weighted mean, so the
scale does not move with the block size). Stats: slot 1 (the first drafted token) stands for the headline
token_ce / top1_agreement; slot{i}/... per slot; accept_len: per block, 1 + the greedy run of top-1 matches
from slot 1 (tau as a chain would see it with k = B-1, bonus counted), summed over blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.dflash import blocks
from train.losses import divergence_per_position, top1_ids
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, LossSettings, ObjectiveSettings


class DFlashObjective(ObjectiveSettings):
    def __init__(self, cfg: LossSettings) -> None:
        super().__init__(cfg)  # the stage's divergence, temperature, top-k
        self.gamma, self.max_anchors = cfg.draft.gamma, cfg.draft.max_anchors

    def __call__(
        self,
        draft: nn.Module,
        target: FrozenTarget,
        input_ids: torch.Tensor,
        features: TargetFeatures,
        loss_mask: torch.Tensor,
        training: bool,
        packing: Packing | None = None,
    ) -> LossOutput:
        head = getattr(draft, "module", draft)  # the plain module behind a DeepSpeed engine
        c = head.config
        if features.layers is None:
            raise ValueError("dflash needs fused target layers: target.feature_layers is empty")
        bs, dev = c.block_size, input_ids.device
        dtype = next(head.parameters()).dtype
        doc = packing.doc_ids if packing is not None else None
        pos_ids = packing.position_ids if packing is not None else None
        cand = blocks.anchor_candidates(loss_mask, input_ids, c.mask_token_id, doc)
        anchors, valid = blocks.select_anchors(cand, self.max_anchors, random=training)
        t = input_ids.shape[1]
        mask = blocks.block_attention_mask(anchors, valid, t, bs, doc)
        slot_pos, slot = blocks.block_layout(anchors, bs)
        # Slot tokens: the anchor's own token, then mask ids (embedded by the head's mask embedding).
        toks = torch.full_like(slot_pos, c.mask_token_id)
        toks[:, ::bs] = input_ids.gather(1, anchors)
        if pos_ids is None:
            ctx_pos = torch.arange(t, device=dev).expand(input_ids.shape[0], t)
            q_pos = slot_pos
        else:  # positions restart per packed conversation
            ctx_pos = pos_ids
            q_pos = pos_ids.gather(1, anchors).repeat_interleave(bs, dim=1) + slot[None]
        hidden = draft(
            toks,
            target.embed(toks).to(dtype),
            q_pos,
            mask,
            layer_features=features.layers.to(dtype),
            context_positions=ctx_pos,
        )
        logits = head.logits(hidden, target.lm_head)
        src, ok = blocks.slot_targets(anchors, valid, loss_mask, bs, doc)
        true = features.logits.gather(1, src[..., None].expand(-1, -1, features.logits.shape[-1]))
        ce = divergence_per_position(logits, true, *self.divergence)
        okf = ok.float()
        w = blocks.position_weights(bs, self.gamma, dev).repeat(anchors.shape[1])[None] * okf
        loss = (ce * w).sum() / w.sum().clamp(min=1e-9)
        return LossOutput(loss, self._stats(loss, ce, logits, true, okf, anchors.shape[1], bs))

    @torch.no_grad()
    def _stats(self, loss, ce, logits, true, okf, n_blocks: int, bs: int) -> dict[str, torch.Tensor]:  # noqa: ANN001
        match = (top1_ids(logits) == top1_ids(true)).float() * okf
        per = lambda x: x.view(x.shape[0], n_blocks, bs)  # noqa: E731 - (B, A, Bs) view of a (B, Q) tensor
        m, v = per(match), per(okf)
        stats: dict[str, torch.Tensor] = {}
        for i in range(1, bs):
            stats[f"slot{i}/top1_agreement_sum"] = m[:, :, i].sum()
            stats[f"slot{i}/token_ce_sum"] = (per(ce.detach())[:, :, i] * v[:, :, i]).sum()
            stats[f"slot{i}/count"] = v[:, :, i].sum()
        count = v[:, :, 1].sum()
        # A run ends at the first miss; a slot without a loss (past the row's end) ends it too.
        run = torch.cumprod(m[:, :, 1:], dim=-1).sum(-1)
        stats["accept_len_sum"] = ((1.0 + run) * v[:, :, 1]).sum()
        stats["token_ce_sum"] = stats["slot1/token_ce_sum"]
        stats["top1_agreement_sum"] = stats["slot1/top1_agreement_sum"]
        stats["loss_sum"] = loss.detach() * count
        stats["count"] = count
        return stats
