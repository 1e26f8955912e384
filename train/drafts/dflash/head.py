"""The DFlash head (block-diffusion drafter, arXiv 2602.06036), laid out as vLLM 0.32's `DFlashDraftModel`
(vllm/model_executor/models/qwen3_dflash.py) loads it, so the export is a rename-free copy of the state dict.

One forward drafts a whole block: the block's queries are [the last accepted token, mask, mask, ...] at the
positions that follow the context, and they attend to every context position (keys/values projected from the
target's fused hidden states) and to each other in both directions. Slot i >= 1 predicts the token at its own
position. What the head shares with the target (embedding, LM head) is passed in, never copied.

The context never goes through a layer's input norm: each layer's k/v projections read
hidden_norm(fc(fused target layers)) directly (vLLM's precompute_and_store_context_kv; speculators'
Qwen3DFlashAttention), while the block runs a pre-norm Qwen3 decoder layer with per-head q/k RMSNorm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from train.modeling.draft.layers import GatedMLP, KVCache, RMSNorm, Rotary, apply_rotary


@dataclass
class DFlashHeadConfig:
    hidden_size: int  # = the target's: the head reads the target's embedding and feeds its LM head
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int  # the target's embedding rows; the mask id must lie below it
    feature_layers: list[int] = field(default_factory=list)  # target hidden_states indices, fused by fc
    num_layers: int = 1
    block_size: int = 8  # B: 1 anchor (the last accepted token) + B-1 mask slots, i.e. B-1 drafted tokens
    mask_token_id: int = 0  # the id vLLM feeds the mask slots (dflash_config.mask_token_id)
    # True: mask slots embed a trained vector of their own (vLLM: mask_embedding.pt beside the weights), not
    # the target's row for mask_token_id. See docs/dflash.md, "The mask token".
    separate_mask_embedding: bool = True
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # the target's rope type and parameters (layers.target_rope)
    max_position_embeddings: int | None = None
    rms_norm_eps: float = 1e-6
    architecture: str = "dflash"

    def to_dict(self) -> dict:
        return asdict(self)


class DFlashAttention(nn.Module):
    def __init__(self, c: DFlashHeadConfig) -> None:
        super().__init__()
        if c.num_heads % c.num_kv_heads:
            raise ValueError(f"num_heads={c.num_heads} must be a multiple of num_kv_heads={c.num_kv_heads}")
        h, d = c.hidden_size, c.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, d
        self.q_proj = nn.Linear(h, c.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, c.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, c.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(c.num_heads * d, h, bias=False)
        self.q_norm = RMSNorm(d, c.rms_norm_eps)  # Qwen3's per-head norms, before rotary
        self.k_norm = RMSNorm(d, c.rms_norm_eps)
        self.rotary = Rotary(d, c.rope_theta, c.rope_scaling, c.max_position_embeddings)

    def kv(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) states at `positions` -> rotated keys and values, each (B, n_kv, T, head_dim)."""
        b, t, _ = x.shape
        k = self.k_norm(self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary(positions, k.dtype)
        return apply_rotary(k, cos, sin), v

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None,
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        """x: (B, Q, H) block queries; keys = [context_kv | the block's own]; attn_mask (B|1, 1, Q, C + Q)."""
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.num_heads, self.head_dim)).transpose(1, 2)
        cos, sin = self.rotary(positions, q.dtype)
        q = apply_rotary(q, cos, sin)
        k, v = self.kv(x, positions)
        if context_kv is not None:
            k, v = torch.cat([context_kv[0], k], dim=2), torch.cat([context_kv[1], v], dim=2)
        if self.num_kv_heads != self.num_heads:
            rep = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class DFlashLayer(nn.Module):
    """Pre-norm decoder layer over the block; the context enters only as keys/values."""

    def __init__(self, c: DFlashHeadConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = DFlashAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = GatedMLP(c.hidden_size, c.intermediate_size)

    def forward(self, x, positions, context_kv, attn_mask) -> torch.Tensor:  # noqa: ANN001 - see DFlashAttention
        x = x + self.self_attn(self.input_layernorm(x), positions, context_kv, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DFlashHead(nn.Module):
    config_class = DFlashHeadConfig

    def __init__(self, config: DFlashHeadConfig) -> None:
        super().__init__()
        if config.block_size < 2:
            raise ValueError(f"DFlashHeadConfig.block_size={config.block_size}: needs >= 2 (anchor + a mask)")
        if not config.feature_layers:
            raise ValueError("DFlashHeadConfig.feature_layers is empty: DFlash reads fused target layers")
        self.config = config
        h = config.hidden_size
        self.fc = nn.Linear(len(config.feature_layers) * h, h, bias=False)
        self.hidden_norm = RMSNorm(h, config.rms_norm_eps)
        self.layers = nn.ModuleList(DFlashLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(h, config.rms_norm_eps)
        self.mask_embedding = nn.Parameter(torch.zeros(h)) if config.separate_mask_embedding else None

    def new_cache(self) -> KVCache:
        """Per layer, the keys/values of the verified context (the block's own are never kept)."""
        return KVCache(len(self.layers))

    def forward(
        self,
        tokens: torch.Tensor,
        embeds: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor,
        layer_features: torch.Tensor | None = None,
        context_positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Block hidden states (B, Q, H), before the final norm (`logits` applies it).

        tokens/embeds: the block's ids (B, Q) and the target's embedding of them; slots holding
        mask_token_id take the head's own mask embedding instead (as vLLM substitutes it, whatever the slot).
        layer_features (B, C, n*H) at context_positions: context to attend to, appended to `cache` when given;
        with cache and no new features, the cached context alone. attn_mask (B|1, 1, Q, cached + C + Q) bool.
        Everything runs inside forward so ZeRO-3 gathers each parameter it uses."""
        if self.mask_embedding is not None:
            is_mask = (tokens == self.config.mask_token_id)[..., None]
            embeds = torch.where(is_mask, self.mask_embedding.to(embeds.dtype), embeds)
        ctx = None
        if layer_features is not None:
            if context_positions is None:
                raise ValueError("DFlashHead.forward: layer_features need context_positions")
            ctx = self.hidden_norm(self.fc(layer_features))
        x = embeds
        for i, layer in enumerate(self.layers):
            kv = None if ctx is None else layer.self_attn.kv(ctx, context_positions)
            if cache is not None:
                if kv is not None:
                    kv = cache.update(i, *kv)
                elif cache.keys[i] is not None:
                    kv = (cache.keys[i], cache.values[i])
            x = layer(x, positions, kv, attn_mask)
        return x

    def logits(self, hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        """The target's LM head over the normed block states: DFlash has no LM head of its own."""
        return lm_head(self.norm(hidden).to(lm_head.weight.dtype))
