"""EAGLE-3 / Scylla drafter: the EAGLE drafter, with two differences the head brings.

- Verified positions read the *fused* target layers (low, middle, high), which the head projects itself;
  drafted nodes read the head's own previous output, as in training-time test.
- The head predicts over a reduced draft vocabulary; its logits are scattered into the target's
  vocabulary (-inf elsewhere), so the tree search, sampling and verification all work in target ids and a
  token outside the draft vocabulary simply has probability 0 under the draft.
"""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.eagle.drafter import EagleDrafter
from train.drafts.eagle3.layers import target_layers
from train.modeling.target import FrozenTarget


class _TargetVocabHead(nn.Module):
    """Adapts an Eagle3Head to the EAGLE drafter's calls: forward(embeds, feats, ...) and logits(...)."""

    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        super().__init__()
        self.inner = head
        self.vocab = target.vocab_size

    def new_cache(self):  # noqa: ANN201 - the head's KVCache
        return self.inner.new_cache()

    def forward(
        self,
        embeds: torch.Tensor,
        feats: torch.Tensor,
        verified: bool,
        **kwargs,  # noqa: ANN003
    ) -> torch.Tensor:
        if (
            verified
        ):  # committed positions read the concatenated target layers, drafted nodes the head's output
            return self.inner(embeds, layer_features=feats, **kwargs)
        return self.inner(embeds, feats, **kwargs)

    def logits(self, hidden: torch.Tensor, lm_head: nn.Module | None = None) -> torch.Tensor:
        reduced = self.inner.logits(hidden)
        full = reduced.new_full((*reduced.shape[:-1], self.vocab), float("-inf"))
        return full.index_copy(-1, self.inner.d2t, reduced)


class Eagle3Drafter(EagleDrafter):
    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        layers = target_layers(head.config, target.num_layers)  # the algorithm's one answer (layers.py)
        self.feature_layers = layers
        self.fused_width = len(layers) * target.hidden_size
        super().__init__(_TargetVocabHead(head, target), target)

    def start(self, batch: int) -> None:
        super().start(batch)
        dev, dtype = self.target.device, self.target.dtype
        self.pend_feat = torch.zeros(batch, 0, self.fused_width, dtype=dtype, device=dev)
        self.carry = torch.zeros(batch, self.fused_width, dtype=dtype, device=dev)

    def _run(
        self, tokens: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, verified: bool
    ) -> torch.Tensor:
        embeds = self.target.embed(tokens)
        return self.head(embeds, feats, verified, position_ids=pos, cache=self.cache, attn_mask=mask)
