"""EAGLE-3 / Scylla drafter: the EAGLE drafter, with two differences the head brings.

- Verified positions read the *fused* target layers (low, middle, high), which the head projects itself;
  drafted nodes read the head's own previous output, as in training-time test.
- The head predicts over a reduced draft vocabulary (32k of Llama-3's 128k): the tree search runs on those
  logits as they are and maps only the ids it picks to target ids with the head's d2t (one home of the map),
  and a sampled chain's q is widened to target ids once per proposal (train/decoding/vocab.py). A token
  outside the draft vocabulary has probability 0 under the draft either way; tests/reference_eagle3_drafter.py
  keeps the old full-vocabulary path as the oracle this one must equal.
"""

from __future__ import annotations

import torch
from torch import nn

from train.decoding.vocab import ReducedVocab
from train.drafts.eagle.drafter import EagleDrafter
from train.drafts.eagle3.layers import target_layers
from train.modeling.target import FrozenTarget


class _FusedInputHead(nn.Module):
    """Adapts an Eagle3Head to the EAGLE drafter's calls: forward(embeds, feats, verified, ...) and
    logits(...), the latter over the draft vocabulary."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.inner = head

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
        return self.inner.logits(hidden)


class Eagle3Drafter(EagleDrafter):
    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        layers = target_layers(head.config, target.num_layers)  # the algorithm's one answer (layers.py)
        self.feature_layers = layers
        self.fused_width = len(layers) * target.hidden_size
        super().__init__(_FusedInputHead(head), target)

    def start(self, batch: int) -> None:
        super().start(batch)
        dev, dtype = self.target.device, self.target.dtype
        self.pend_feat = torch.zeros(batch, 0, self.fused_width, dtype=dtype, device=dev)
        self.carry = torch.zeros(batch, self.fused_width, dtype=dtype, device=dev)

    def reduced_vocab(self) -> ReducedVocab:
        # Read at each proposal, so a d2t loaded or moved to another device after construction is the one used.
        return ReducedVocab(self.head.inner.d2t, self.target.vocab_size)

    def _run(
        self, tokens: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, verified: bool
    ) -> torch.Tensor:
        embeds = self.target.embed(tokens)
        return self.head(embeds, feats, verified, position_ids=pos, cache=self.cache, attn_mask=mask)
