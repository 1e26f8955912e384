"""The EAGLE-3 objective's unrolled steps as they were before the full-logits copy was taken out of the loop
(train/drafts/eagle3/objective.py): each step shifted the full (B, L, V) target logits and reduced them to
the draft vocabulary again. Kept as the reference the new version must equal (tests/test_hot_paths.py) and as
the "before" of tests/bench/bench_eagle3_objective.py."""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.eagle3.objective import Eagle3Objective, _shift, unrolled_attention_mask
from train.losses import divergence_per_position
from train.modeling.doc_mask import Packing, doc_causal_mask
from train.modeling.target import FrozenTarget, TargetFeatures


class ReferenceEagle3Objective(Eagle3Objective):
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
        true_logits_full = features.logits[:, 1:]  # position t+1: the distribution of the token after it
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
            true_full = _shift(true_logits_full, j, fill=0.0)
            true_reduced = true_full.index_select(-1, d2t)
            valid = _shift(loss_mask[:, 1:].float(), j, fill=0.0)
            if packing is not None:
                same = torch.zeros_like(valid)
                same[:, : length - j] = packing.same_doc(1 + j).float()
                valid = valid * same
            ce = divergence_per_position(logits, true_reduced, *self.divergence)
            match = (d2t[logits.argmax(-1)] == true_full.argmax(-1)).float()
            results.append((ce, valid, match))
            prev = out
        return results
