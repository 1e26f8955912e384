"""Medusa objective: head k at position t learns the target's distribution for the token at t+k+2
(self-distillation), plus optional plain cross-entropy on the data's token there; head k weighs decay**k."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.losses import divergence_per_position, top1_ids
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, LossSettings, ObjectiveSettings


class MedusaObjective(ObjectiveSettings):
    def __init__(self, cfg: LossSettings) -> None:
        super().__init__(cfg)
        self.decay = cfg.draft.ttt_decay

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
        head = getattr(draft, "module", draft)
        dtype = next(head.parameters()).dtype
        head_hidden = draft(features.hidden.to(dtype))  # (K, B, T, H)
        logits = head.logits(head_hidden.to(target.dtype), target.lm_head)  # (K, B, T, V)
        seq = input_ids.shape[1]
        total = torch.zeros((), device=input_ids.device)
        stats: dict[str, torch.Tensor] = {}
        count0 = None
        for k in range(logits.shape[0]):
            span = seq - (k + 2)  # positions t whose token t+k+2 exists
            if span <= 0:
                break
            pred = logits[k, :, :span].float()
            target_logits = features.logits[:, k + 1 : k + 1 + span].float()
            valid = loss_mask[:, k + 2 : k + 2 + span].float()
            if packing is not None:  # target features are per conversation; the label must be in it too
                valid = valid * packing.same_doc(k + 2)
            soft = divergence_per_position(pred, target_logits, *self.divergence)
            per_pos = self.token_weight * soft
            if self.data_ce_weight:  # a full-vocabulary pass per head: skipped when it has no weight
                labels = input_ids[:, k + 2 : k + 2 + span]
                hard = F.cross_entropy(pred.transpose(1, 2), labels, reduction="none")
                per_pos = per_pos + self.data_ce_weight * hard
            count0 = valid.sum() if count0 is None else count0
            total = total + (self.decay**k) * (per_pos * valid).sum()
            with torch.no_grad():
                match = (top1_ids(pred) == top1_ids(target_logits)).float()
                stats[f"head{k}/token_ce_sum"] = (soft * valid).sum()
                stats[f"head{k}/top1_agreement_sum"] = (match * valid).sum()
                stats[f"head{k}/count"] = valid.sum()
        if count0 is None:
            raise ValueError(f"sequences of {seq} tokens are too short for Medusa heads")
        loss = total / count0.clamp(min=1)
        stats.update(
            loss_sum=loss.detach() * count0,
            token_ce_sum=stats["head0/token_ce_sum"],
            top1_agreement_sum=stats["head0/top1_agreement_sum"],
            count=count0,
        )
        return LossOutput(loss, stats)
