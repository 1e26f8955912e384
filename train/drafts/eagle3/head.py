"""EAGLE-3 head (and Scylla, its deep variant): fused multi-layer target features, own reduced-vocab LM head.

Differences from the EAGLE-1/2 head that matter:
- the feature is a projection of several target layers (low, middle, high), not the last one;
- it predicts tokens only (no feature regression) over a reduced draft vocabulary, mapped back to target
  ids with `d2t`; the head owns its final norm and LM head;
- it is trained with training-time test: unrolled on its own hidden states, so at step j>0 the feature
  input is the head's previous output, exactly as at decode time.
Scylla is this class with N decoder layers (N = 1 is EAGLE-3's layout, parameter for parameter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from train.drafts.eagle3.config import Eagle3Config
from train.modeling.doc_mask import VarlenMask
from train.modeling.draft.layers import Attention, DecoderLayer, GatedMLP, KVCache, RMSNorm


@dataclass
class Eagle3HeadConfig:
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int  # the target's vocabulary (d2t maps into it)
    draft_vocab_size: int  # rows of the head's own LM head
    feature_layers: list[int] = field(default_factory=list)  # target hidden_states indices fused at step 0
    num_layers: int = 1
    rope_theta: float = 10000.0
    # The target's rope scaling (rope_type + its parameters, e.g. llama3's factor and frequency bands) and the
    # max_position_embeddings yarn / dynamic read; None = plain RoPE. See layers.target_rope.
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int | None = None
    rms_norm_eps: float = 1e-6
    architecture: str = "eagle3"
    # "draftforge": input_proj(2H->H) over (normed embedding, normed feature) feeds standard decoder layers.
    # "eagle3": the published EAGLE-3 layout (SafeAILab EAGLE-3, SGLang/vLLM llama_eagle3.py): layer 0's
    # q/k/v read the 2H concatenation directly and its residual is the raw feature. The two are not
    # convertible into each other, so a head meant for SGLang/vLLM must be trained (or imported) in this one.
    layout: str = Eagle3Config.layout  # defaults: the algorithm config's (config.py), the only ones
    # speculators/vLLM switches (their trainer's defaults are true; EAGLE-3's own checkpoints use false):
    # norm_before_residual: layer 0's residual is hidden_norm(feature) instead of the raw feature (eagle3 layout);
    # norm_before_fc: one RMSNorm (input_norm) over the fused n*H target features before fc.
    norm_before_residual: bool = Eagle3Config.norm_before_residual
    norm_before_fc: bool = Eagle3Config.norm_before_fc

    def to_dict(self) -> dict:
        return asdict(self)


class Eagle3FirstLayer(nn.Module):
    """Layer 0 of the "eagle3" layout: attention over cat(input_layernorm(embedding), hidden_norm(feature)),
    residual = the un-normed feature (EAGLE-3's norm-after-residual; speculators' norm_before_residual=False),
    or the normed one when config.norm_before_residual (vLLM llama_eagle3.py _norm_before_residual)."""

    def __init__(self, c: Eagle3HeadConfig) -> None:
        super().__init__()
        h = c.hidden_size
        self.hidden_norm = RMSNorm(h, c.rms_norm_eps)
        self.input_layernorm = RMSNorm(h, c.rms_norm_eps)
        self.self_attn = Attention(
            h,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            c.rope_theta,
            c.rope_scaling,
            c.max_position_embeddings,
        )
        # q/k/v read the 2H concatenation (layers.py's Attention is square; widen its inputs here).
        self.self_attn.q_proj = nn.Linear(2 * h, c.num_heads * c.head_dim, bias=False)
        self.self_attn.k_proj = nn.Linear(2 * h, c.num_kv_heads * c.head_dim, bias=False)
        self.self_attn.v_proj = nn.Linear(2 * h, c.num_kv_heads * c.head_dim, bias=False)
        self.post_attention_layernorm = RMSNorm(h, c.rms_norm_eps)
        self.mlp = GatedMLP(h, c.intermediate_size)
        self.norm_before_residual = c.norm_before_residual

    def forward(
        self,
        x: torch.Tensor,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        cache: KVCache | None = None,
        layer_idx: int = 0,
        attn_mask: torch.Tensor | VarlenMask | None = None,
    ) -> torch.Tensor:
        normed = self.hidden_norm(x)
        if self.norm_before_residual:
            x = normed
        fused = torch.cat([self.input_layernorm(embeds), normed], dim=-1)
        x = x + self.self_attn(fused, position_ids, cache, layer_idx, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Eagle3Head(nn.Module):
    config_class = Eagle3HeadConfig

    def __init__(self, config: Eagle3HeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        n_fused = max(1, len(config.feature_layers))
        self.fc = nn.Linear(n_fused * h, h, bias=False)  # fused target layers -> one feature
        if config.norm_before_residual and config.layout != "eagle3":
            raise ValueError("Eagle3HeadConfig.norm_before_residual needs layout='eagle3' (its layer 0)")
        self.input_norm = RMSNorm(n_fused * h, config.rms_norm_eps) if config.norm_before_fc else None
        if config.layout not in ("draftforge", "eagle3"):
            raise ValueError(f"Eagle3HeadConfig.layout={config.layout!r}: expected 'draftforge' or 'eagle3'")
        self.eagle3_layout = config.layout == "eagle3"
        if not self.eagle3_layout:
            self.embed_norm = RMSNorm(h, config.rms_norm_eps)
            self.feature_norm = RMSNorm(h, config.rms_norm_eps)
            self.input_proj = nn.Linear(2 * h, h, bias=False)  # (token embedding, feature) -> residual stream
        self.layers = nn.ModuleList(
            Eagle3FirstLayer(config)
            if i == 0 and self.eagle3_layout
            else DecoderLayer(
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
            for i in range(config.num_layers)
        )
        self.norm = RMSNorm(h, config.rms_norm_eps)
        self.lm_head = nn.Linear(h, config.draft_vocab_size, bias=False)
        # Draft-vocab index -> target token id. Identity until a vocabulary map is loaded.
        self.register_buffer("d2t", torch.arange(config.draft_vocab_size), persistent=True)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.layers))

    def fuse(self, layer_features: torch.Tensor) -> torch.Tensor:
        """(B, T, n_fused * H) concatenated target layers -> (B, T, H) step-0 feature."""
        if self.input_norm is not None:
            layer_features = self.input_norm(layer_features)
        return self.fc(layer_features)

    def forward(
        self,
        input_embeds: torch.Tensor,
        features: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | VarlenMask | None = None,
        layer_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """features: (B, T, H), the head's own previous output; or layer_features: (B, T, n*H) target layers,
        fused here (inside forward, so ZeRO-3 gathers fc's weights like every other parameter)."""
        if layer_features is not None:
            features = self.fuse(layer_features)
        if features is None:
            raise ValueError("Eagle3Head needs features or layer_features")
        b, t, _ = input_embeds.shape
        if position_ids is None:
            start = 0 if cache is None else cache.length
            position_ids = torch.arange(start, start + t, device=input_embeds.device).expand(b, t)
        if self.eagle3_layout:
            x = self.layers[0](features, input_embeds, position_ids, cache, 0, attn_mask)
        else:
            x = self.input_proj(
                torch.cat([self.embed_norm(input_embeds), self.feature_norm(features)], dim=-1)
            )
            x = self.layers[0](x, position_ids, cache, 0, attn_mask)
        for i, layer in enumerate(self.layers[1:], start=1):
            x = layer(x, position_ids, cache, i, attn_mask)
        return x

    def logits(self, hidden: torch.Tensor, lm_head: nn.Module | None = None) -> torch.Tensor:
        """Draft-vocabulary logits; the target's LM head is not used (argument kept for one interface)."""
        return self.lm_head(self.norm(hidden))

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return self.d2t[draft_ids]
