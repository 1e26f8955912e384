"""Loss terms as (sum, count) pairs: the caller divides totals, never averages per-batch ratios (rule 7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_regression_sum(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Smooth L1 between predicted and true target features, averaged over the hidden size, summed over
    masked positions. Smooth L1 (as EAGLE) keeps the rare large-norm feature from dominating the gradient."""
    per_pos = F.smooth_l1_loss(pred.float(), target.float(), reduction="none").mean(-1)
    return (per_pos * mask).sum()


def soft_cross_entropy_sum(
    draft_logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the draft's next-token distribution against the target's full distribution."""
    target_p = torch.softmax(target_logits.float(), dim=-1)
    per_pos = -(target_p * torch.log_softmax(draft_logits.float(), dim=-1)).sum(-1)
    return (per_pos * mask).sum()


def top1_match_sum(
    draft_logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """How often the draft's top token is the target's top token: what greedy acceptance depends on."""
    return ((draft_logits.argmax(-1) == target_logits.argmax(-1)).float() * mask).sum()
