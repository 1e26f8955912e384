"""EAGLE-1/2 objective: regress the target's next feature and match its next-token distribution."""

from __future__ import annotations

import torch
from torch import nn

from train.losses import divergence_sum, feature_regression_sum, top1_match_sum
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, LossSettings, ObjectiveSettings


class EagleObjective(ObjectiveSettings):
    def __init__(self, cfg: LossSettings) -> None:
        super().__init__(cfg)
        self.noise = cfg.draft.feature_noise

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
        # Draft position t reads (token t+1, target feature t) and predicts feature t+1 / token t+2.
        in_embeds = target.embed(input_ids[:, 1:])
        in_feats = features.hidden[:, :-1]
        if training and self.noise > 0:
            # EAGLE's trick: at decode time the head reads its own (imperfect) features; noise prepares it.
            in_feats = in_feats + (torch.rand_like(in_feats) * 2 - 1) * self.noise
        draft_dtype = next(draft.parameters()).dtype
        mask = loss_mask[:, 1:].to(in_feats.device, torch.float32)
        if packing is None:
            out = draft(in_embeds.to(draft_dtype), in_feats.to(draft_dtype))
        else:
            # Draft position t belongs to feature t's conversation; where token t+1 opens the next one, the
            # position mixes two conversations: it is the last of its own (no one in it attends to it later,
            # the mask keeps the next one out) and its loss is masked.
            docs = packing.doc_ids[:, :-1]
            out = draft(
                in_embeds.to(draft_dtype),
                in_feats.to(draft_dtype),
                position_ids=packing.position_ids[:, :-1],
                attn_mask=packing.draft_mask(docs),
            )
            mask = mask * packing.same_doc(1)
        draft_logits = target.lm_head(out.to(target.dtype))
        true_feats, true_logits = features.hidden[:, 1:], features.logits[:, 1:]
        feat_sum = feature_regression_sum(out, true_feats, mask)
        tok_sum = divergence_sum(draft_logits, true_logits, mask, *self.divergence)
        count = mask.sum()
        loss = (self.feature_weight * feat_sum + self.token_weight * tok_sum) / count.clamp(min=1)
        with torch.no_grad():
            stats = {
                "loss_sum": loss.detach() * count,
                "feature_loss_sum": feat_sum.detach(),
                f"token_{self.divergence[0]}_sum": tok_sum.detach(),
                "top1_agreement_sum": top1_match_sum(draft_logits, true_logits, mask),
                "count": count,
            }
        return LossOutput(loss, stats)
