"""P-EAGLE head: the EAGLE-3 head (eagle3/head.py, unchanged) plus a learned `mask_hidden`.

`mask_hidden` has the width of the fused target layers (3 x target hidden, what vLLM's PEagle loader reads,
llama_eagle3.py): a mask slot has no target feature, so it is given this one, projected by the same `fc` as
real features (vLLM's combine_hidden_states). Its token is `mask_token_id`, embedded by the target's
(frozen, shared) embedding. The mask slots are chosen by position inside forward (`mask_slots`), never by
comparing token ids, as vLLM does (is_masked_token_mask), and mask_hidden is read inside forward so that
ZeRO-3 gathers it like every other parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.modeling.doc_mask import VarlenMask
from train.modeling.draft.layers import KVCache


@dataclass
class PEagleHeadConfig(Eagle3HeadConfig):
    mask_token_id: int = 0  # the embedding row of every mask slot (< vocab_size)
    # k the head was trained to draft in one forward; 1 = a plain EAGLE-3 head (refused by the P-EAGLE export)
    parallel_tokens: int = 1
    architecture: str = "peagle"


class PEagleHead(Eagle3Head):
    config_class = PEagleHeadConfig

    def __init__(self, config: PEagleHeadConfig) -> None:
        super().__init__(config)
        if not 0 <= config.mask_token_id < config.vocab_size:
            raise ValueError(
                f"PEagleHeadConfig.mask_token_id={config.mask_token_id} lies outside the embedding "
                f"(0..{config.vocab_size - 1}); pick an id of the target's vocabulary (draft.mask_token_id)"
            )
        width = self.fc.in_features  # n_fused x target hidden
        # Small random start: zero would make layer 0's hidden_norm divide 0 by sqrt(eps).
        self.mask_hidden = nn.Parameter(torch.randn(width) * 0.02)

    def forward(
        self,
        input_embeds: torch.Tensor,
        features: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | VarlenMask | None = None,
        layer_features: torch.Tensor | None = None,
        mask_slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """mask_slots: (B, T) bool, True where the slot is a mask slot: its layer features become mask_hidden
        (layer_features may hold anything there). Everything else is Eagle3Head.forward."""
        if mask_slots is not None:
            if layer_features is None:
                raise ValueError(
                    "PEagleHead: mask_slots replace layer features, so layer_features are needed"
                )
            fill = self.mask_hidden.to(layer_features.dtype).expand_as(layer_features)
            layer_features = torch.where(mask_slots[..., None], fill, layer_features)
        return super().forward(input_embeds, features, position_ids, cache, attn_mask, layer_features)
