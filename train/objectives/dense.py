"""Dense-draft objective: a stand-alone LM learns the target's next-token distribution (soft cross-entropy,
i.e. forward KL up to the target's entropy) plus optional plain cross-entropy on the data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.losses import divergence_sum, top1_match_sum
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, ObjectiveSettings


class DenseObjective(ObjectiveSettings):
    def __call__(
        self,
        draft: nn.Module,
        target: FrozenTarget,
        input_ids: torch.Tensor,
        features: TargetFeatures,
        loss_mask: torch.Tensor,
        training: bool,
    ) -> LossOutput:
        logits = draft(input_ids)[:, :-1].float()  # position t predicts token t+1, as the target's logits
        true_logits = features.logits[:, :-1]
        mask = loss_mask[:, 1:].float()
        soft_sum = divergence_sum(logits, true_logits, mask, *self.divergence)
        hard = F.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")
        hard_sum = (hard * mask).sum()
        count = mask.sum()
        loss = (self.token_weight * soft_sum + self.data_ce_weight * hard_sum) / count.clamp(min=1)
        with torch.no_grad():
            stats = {
                "loss_sum": loss.detach() * count,
                f"token_{self.divergence[0]}_sum": soft_sum.detach(),
                "data_ce_sum": hard_sum.detach(),
                "top1_agreement_sum": top1_match_sum(logits, true_logits, mask),
                "count": count,
            }
        return LossOutput(loss, stats)
