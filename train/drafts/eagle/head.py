"""EAGLE-1/2 draft head: fuse the next token's embedding with the target's feature, run decoder layers,
predict the next feature. Token logits come from the target's frozen LM head (see `logits`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from train.drafts.eagle.config import EagleConfig
from train.modeling.doc_mask import VarlenMask
from train.modeling.draft.layers import DecoderLayer, KVCache


@dataclass
class EagleHeadConfig:
    """Architecture of an EAGLE head; everything needed to rebuild it from an export's config.json."""

    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_layers: int = 1
    rope_theta: float = 10000.0
    # The target's rope scaling (rope_type + its parameters, e.g. llama3's factor and frequency bands) and the
    # max_position_embeddings yarn / dynamic read; None = plain RoPE. See layers.target_rope.
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int | None = None
    rms_norm_eps: float = 1e-6
    vocab_size: int = 0  # the target's vocabulary: checked against the target when an export is loaded
    architecture: str = "eagle"
    # False = the original EAGLE-1/2 layout (SafeAILab/EAGLE cnets1.py): layer 0 has no input_layernorm, since
    # fc's output is already the fused input; needed to export to / import from that layout exactly.
    first_layer_input_norm: bool = EagleConfig.first_layer_input_norm  # defaults: config.py's, the only ones
    # True = fc has a bias (our earlier head; old exports recorded it, since every export writes each key). False is
    # what engines load: vLLM's llama_eagle.py fc has no bias, and SGLang and vLLM read config.json's "bias",
    # the EAGLE repo's fc-bias switch, as attention biases too (see train/drafts/eagle/export.py).
    fc_bias: bool = EagleConfig.fc_bias

    def to_dict(self) -> dict:
        return asdict(self)


class EagleHead(nn.Module):
    """Input at position t: (embedding of token t+1, target feature at t). Output: predicted feature at t+1."""

    config_class = EagleHeadConfig

    def __init__(self, config: EagleHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.fc = nn.Linear(2 * h, h, bias=config.fc_bias)
        self.layers = nn.ModuleList(
            DecoderLayer(
                h,
                config.intermediate_size,
                config.num_heads,
                config.num_kv_heads,
                config.head_dim,
                config.rope_theta,
                config.rms_norm_eps,
                config.rope_scaling,
                config.max_position_embeddings,
            )
            for _ in range(config.num_layers)
        )
        if not config.first_layer_input_norm:
            self.layers[0].input_layernorm = nn.Identity()

    def new_cache(self) -> KVCache:
        return KVCache(len(self.layers))

    def forward(
        self,
        input_embeds: torch.Tensor,
        features: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | VarlenMask | None = None,
    ) -> torch.Tensor:
        b, t, _ = input_embeds.shape
        if position_ids is None:
            start = 0 if cache is None else cache.length
            position_ids = torch.arange(start, start + t, device=input_embeds.device).expand(b, t)
        x = self.fc(torch.cat([input_embeds, features], dim=-1))
        for i, layer in enumerate(self.layers):
            x = layer(x, position_ids, cache, i, attn_mask)
        return x

    @staticmethod
    def logits(hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        """EAGLE-1/2 reuse the target's LM head on the predicted feature."""
        return lm_head(hidden)
