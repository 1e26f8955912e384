"""Dense-draft objective: a stand-alone LM learns the target's next-token distribution (soft cross-entropy,
i.e. forward KL up to the target's entropy) plus optional plain cross-entropy on the data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.losses import divergence_sum, top1_match_sum
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, ObjectiveSettings


def _packed_logits(draft: nn.Module, input_ids: torch.Tensor, packing: Packing) -> torch.Tensor:
    """The dense draft is a transformers model: it takes packed rows as the target does (feature_source.py)."""
    model = getattr(draft, "module", draft).model
    if packing.varlen:  # flash-attn varlen from restarting positions, which transformers reads for one row
        b, t = input_ids.shape
        flat = draft(input_ids.reshape(1, -1), position_ids=packing.position_ids.reshape(1, -1))
        return flat.view(b, t, -1)
    mask = packing.hf_mask(model.config._attn_implementation, next(model.parameters()).dtype)
    return draft(input_ids, position_ids=packing.position_ids, attention_mask=mask)


class DenseObjective(ObjectiveSettings):
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
        mask = loss_mask[:, 1:].float()
        if packing is None:
            logits = draft(input_ids)
        else:
            logits = _packed_logits(draft, input_ids, packing)
            mask = mask * packing.same_doc(1)  # the last token of a conversation predicts nothing
        logits = logits[:, :-1].float()  # position t predicts token t+1, as the target's logits
        true_logits = features.logits[:, :-1]
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
