"""Building blocks shared by the draft heads: RMSNorm, rotary embeddings, attention with a croppable KV cache.

Attention is written here rather than borrowed from `transformers` because speculative decoding needs two
things the library's cache API keeps changing: cropping a cache back to the accepted prefix, and arbitrary
(tree) attention masks over cached + new positions. The rotary tables do come from `transformers`, so every
rope type a target uses is computed by the same code as the target's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from train.modeling.doc_mask import VarlenMask


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 so bf16 training does not lose the small-variance features.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def target_rope(config: Any) -> dict[str, Any]:
    """The rope fields a head config carries (rope_theta, rope_scaling, max_position_embeddings), read from a
    target's HF config or a published draft's config.json: transformers 5 keeps everything in
    `rope_parameters`, 4.x and published drafts in `rope_theta` + `rope_scaling` (older ones spell `type`).
    rope_scaling is None for plain RoPE, so plain heads' configs stay as they were."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    params = dict(get("rope_parameters") or get("rope_scaling") or {})
    theta = float(params.pop("rope_theta", None) or get("rope_theta", None) or 10000.0)
    if "type" in params:
        params.setdefault("rope_type", params.pop("type"))
    if params.get("rope_type", "default") == "default":
        return {"rope_theta": theta, "rope_scaling": None, "max_position_embeddings": None}
    return {
        "rope_theta": theta,
        "rope_scaling": params,
        "max_position_embeddings": get("max_position_embeddings"),
    }


class Rotary:
    """cos/sin tables from transformers' rotary module for the target's rope settings, of any type (default,
    linear, dynamic, yarn, llama3, ...): a draft must rotate positions exactly as its target does.

    Deliberately not an nn.Module attribute of the layers: `.to(bfloat16)` would cast its frequency table
    (transformers computes it in fp32, as the target does), and the state dict holds no rope tables.
    """

    def __init__(
        self,
        head_dim: int,
        rope_theta: float,
        rope_scaling: dict[str, Any] | None = None,
        max_position_embeddings: int | None = None,
    ) -> None:
        params = {**(rope_scaling or {"rope_type": "default"}), "rope_theta": rope_theta}
        config = LlamaConfig(
            hidden_size=head_dim,
            num_attention_heads=1,
            head_dim=head_dim,
            max_position_embeddings=max_position_embeddings or 4096,  # read by yarn / dynamic only
            rope_parameters=params,
        )
        self.module = LlamaRotaryEmbedding(config)

    def __call__(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables of shape (B, 1, T, head_dim) for the given absolute positions."""
        probe = torch.empty(0, dtype=dtype, device=position_ids.device)  # only its dtype and device are read
        cos, sin = self.module(probe, position_ids)
        return cos[:, None], sin[:, None]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class KVCache:
    """Per-layer key/value tensors of shape (B, n_kv_heads, T, head_dim) that can be cropped.

    Decoding appends the keys of drafted tokens and crops back to the verified prefix, so the cache never
    holds a position computed from a guessed feature once verification is done.
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        """Positions held, as seen before a forward (layer 0 is the first to be appended to)."""
        return self.layer_length(0)

    def layer_length(self, layer: int) -> int:
        # Per layer: inside a forward, earlier layers have already appended the new positions.
        k = self.keys[layer]
        return 0 if k is None else k.shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None and old_v is not None:
            k = torch.cat([old_k, k], dim=2)
            v = torch.cat([old_v, v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def crop(self, length: int) -> None:
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            if k is not None and v is not None:
                self.keys[i], self.values[i] = k[:, :, :length], v[:, :, :length]


class Attention(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        rope_theta: float,
        rope_scaling: dict[str, Any] | None = None,
        max_position_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.rope_theta = rope_theta
        self.rotary = Rotary(head_dim, rope_theta, rope_scaling, max_position_embeddings)
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        position_ids: torch.Tensor,
        cache: KVCache | None = None,
        layer_idx: int = 0,
        attn_mask: torch.Tensor | VarlenMask | None = None,
    ) -> torch.Tensor:
        """attn_mask: None means causal over (cache + new); a bool mask (B or 1, 1, T_new, T_total); or a
        VarlenMask: causal within each packed conversation, run by flash-attn's varlen kernel (CUDA)."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary(position_ids, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.layer_length(layer_idx)
            k, v = cache.update(layer_idx, k, v)  # kept at n_kv_heads: EAGLE-3's unrolled steps read them
        if isinstance(attn_mask, VarlenMask):
            if past:
                raise ValueError(
                    "a varlen (packed) mask covers a whole training row: the cache must be empty"
                )
            return self.o_proj(_flash_varlen(q, k, v, attn_mask).reshape(b, t, -1))
        if attn_mask is None and past > 0 and t > 1:
            # New tokens see every cached position and the new ones causally.
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            attn_mask = torch.cat([torch.ones(t, past, dtype=torch.bool, device=x.device), causal], dim=1)
        out = attend(q, k, v, attn_mask, is_causal=attn_mask is None and past == 0 and t > 1)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


# sdpa reads grouped kv heads in place from torch 2.5 on (`enable_gqa`); before, they are copied per query head.
SDPA_GQA = tuple(int(n) for n in torch.__version__.split(".")[:2]) >= (2, 5)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool
) -> torch.Tensor:
    """sdpa over (B, H, T, D) queries and (B, H_kv, S, D) keys/values, H a multiple of H_kv (query head h
    reads kv head h // (H / H_kv)). The kv heads are read in place: at every draft forward k/v are the whole
    cache, and copying it per query head cost more than the attention itself (tests/bench/bench_gqa_attention.py)."""
    if k.shape[1] == q.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    if SDPA_GQA:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=True
        )
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)


def _flash_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: VarlenMask) -> torch.Tensor:
    """(B, H, T, D) q/k/v -> (B, T, H, D): causal attention within each segment of the flattened tokens.
    flash-attn handles grouped kv heads itself, so k/v keep their n_kv_heads."""
    from flash_attn import flash_attn_varlen_func  # CUDA only: imported where it is used

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])

    out = flash_attn_varlen_func(
        flat(q), flat(k), flat(v), mask.cu_seqlens, mask.cu_seqlens, mask.max_seqlen, mask.max_seqlen,
        causal=True,
    )  # fmt: skip
    return out.view(q.shape[0], q.shape[2], q.shape[1], q.shape[3])


class GatedMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """A pre-norm Llama-style decoder layer (attention + gated MLP)."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        rope_theta: float,
        eps: float,
        rope_scaling: dict[str, Any] | None = None,
        max_position_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, eps)
        self.self_attn = Attention(
            hidden_size, num_heads, num_kv_heads, head_dim, rope_theta, rope_scaling, max_position_embeddings
        )
        self.post_attention_layernorm = RMSNorm(hidden_size, eps)
        self.mlp = GatedMLP(hidden_size, intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        position_ids: torch.Tensor,
        cache: KVCache | None = None,
        layer_idx: int = 0,
        attn_mask: torch.Tensor | VarlenMask | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), position_ids, cache, layer_idx, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))
