"""EAGLE-3 / Scylla objective: training-time test over a reduced vocabulary.

The head is unrolled `ttt_steps` times inside one training step. Step 0 reads the fused target layers; step
j > 0 reads the head's own output from step j-1 at the same position (what it will read at decode time),
with the real next token (teacher forcing on tokens). At step j, query t attends to step 0's keys at
positions <= t (the verified prefix) and to its own keys from steps 1..j (the chain it drafted), never to
another position's guesses. Step j at query t predicts the token after position t+1+j, against the target's
distribution there restricted to the draft vocabulary; its loss weighs ttt_decay**j.
"""

from __future__ import annotations

import torch
from torch import nn

from train.losses import divergence_per_position, select_vocab, top1_ids
from train.modeling.doc_mask import Packing, doc_causal_mask
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, LossSettings, ObjectiveSettings


def unrolled_attention_mask(
    length: int, step: int, device: torch.device, first: torch.Tensor | None = None
) -> torch.Tensor:
    """(1, 1, L, L*(step+1)) bool: causal over step 0's keys, then the diagonal of each later step.
    first: step 0's (B, 1, L, L) mask instead of plain causal (packed chats' block-diagonal one)."""
    if first is None:
        first = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    eye = torch.eye(length, dtype=torch.bool, device=device).expand(first.shape[0], 1, length, length)
    return torch.cat([first, *[eye] * step], dim=-1)


def _shift(x: torch.Tensor, j: int, fill: float | int = 0) -> torch.Tensor:
    """x[:, j:] padded at the end back to x's length (the padding is masked out of every loss)."""
    if j == 0:
        return x
    pad = torch.full_like(x[:, :j], fill)
    return torch.cat([x[:, j:], pad], dim=1)


def targets_on_draft_vocab(features: TargetFeatures, d2t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's next-token logits over the draft vocabulary (B, T - 1, V_draft) and its top token in target
    ids (B, T - 1), taken once per batch: each unrolled step (or parallel slot) only shifts these, where it used
    to copy the full (B, L, V) logits and reduce them again. Selected on every position, then shifted: as
    contiguous as the old index_select's result."""
    reduced = select_vocab(features.logits, d2t)[:, 1:].contiguous()
    return reduced, top1_ids(features.logits[:, 1:])


class Eagle3Objective(ObjectiveSettings):
    def __init__(self, cfg: LossSettings) -> None:
        super().__init__(cfg)
        self.steps = max(1, cfg.draft.ttt_steps)
        self.decay = cfg.draft.ttt_decay

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
        """Per unroll step: (per-position soft CE (B, L), mask (B, L), top-1 match (B, L)), L = T - 1."""
        if features.layers is None:
            raise ValueError(
                "an EAGLE-3 head needs fused target layers: the feature source was given none (SPEC.target_layers)"
            )
        dtype = next(head.parameters()).dtype
        length = input_ids.shape[1] - 1
        d2t = head.d2t
        cache = head.new_cache()
        pos = torch.arange(length, device=input_ids.device).expand(input_ids.shape[0], length)
        first = first_varlen = None
        if packing is not None:
            # Position t belongs to feature t's conversation (see objectives/eagle.py); a step whose token
            # t+1+j lies in the next conversation is masked out of the loss below.
            pos = packing.position_ids[:, :-1]
            first = packing.draft_mask(packing.doc_ids[:, :-1])
            first_varlen = first
            if not isinstance(first, torch.Tensor):  # varlen runs step 0 only; later steps need a dense mask
                first = doc_causal_mask(packing.doc_ids[:, :-1])
        true_reduced_all, true_top_all = targets_on_draft_vocab(features, d2t)
        results = []
        prev = None
        for j in range(self.steps):
            tokens = _shift(input_ids[:, 1:], j, fill=0)
            emb = target.embed(tokens).to(dtype)
            if j == 0:
                out = draft(
                    emb,
                    position_ids=pos,
                    cache=cache,
                    layer_features=features.layers[:, :-1].to(dtype),
                    attn_mask=first_varlen,
                )
            else:
                mask = unrolled_attention_mask(length, j, input_ids.device, first)
                out = draft(emb, prev, position_ids=pos + j, cache=cache, attn_mask=mask)
            logits = head.logits(out)
            results.append(
                self.step_terms(j, logits, true_reduced_all, true_top_all, d2t, loss_mask, packing)
            )
            prev = out
        return results

    def step_terms(
        self,
        j: int,
        logits: torch.Tensor,
        true_reduced_all: torch.Tensor,
        true_top_all: torch.Tensor,
        d2t: torch.Tensor,
        loss_mask: torch.Tensor,
        packing: Packing | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unroll step (or parallel slot) j's (per-position divergence, mask, top-1 match): its draft logits
        predict the token j positions further on, so the targets and the loss mask shift by j, and under
        packing a prediction that crosses into the next conversation is masked out."""
        length = logits.shape[1]
        true_reduced = _shift(true_reduced_all, j, fill=0.0)
        valid = _shift(loss_mask[:, 1:].float(), j, fill=0.0)
        if packing is not None:
            same = torch.zeros_like(valid)
            same[:, : length - j] = packing.same_doc(1 + j).float()
            valid = valid * same
        ce = divergence_per_position(logits, true_reduced, *self.divergence)
        match = (d2t[top1_ids(logits)] == _shift(true_top_all, j, fill=0)).float()
        return ce, valid, match

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
        steps = self.per_position(draft, head, target, input_ids, features, loss_mask, packing)
        total = torch.zeros((), device=input_ids.device)
        stats: dict[str, torch.Tensor] = {}
        count0 = steps[0][1].sum()
        for j, (ce, valid, match) in enumerate(steps):
            ce_sum = (ce * valid).sum()
            # Each step is normalised by step 0's count so deeper steps (fewer valid positions) weigh less.
            total = total + (self.decay**j) * ce_sum
            with torch.no_grad():
                stats[f"step{j}/token_ce_sum"] = ce_sum.detach()
                stats[f"step{j}/top1_agreement_sum"] = (match * valid).sum()
                stats[f"step{j}/count"] = valid.sum()
        loss = total / count0.clamp(min=1)
        stats["loss_sum"] = loss.detach() * count0
        stats["token_ce_sum"] = stats["step0/token_ce_sum"]
        stats["top1_agreement_sum"] = stats["step0/top1_agreement_sum"]
        stats["count"] = count0
        return LossOutput(loss, stats)
