"""Building a fresh EAGLE-3 head from the run's config and the target: sizes from the target, the draft
vocabulary (loaded or counted from the run's data), the LM head's start from the target's rows, and the
optional self-attending start of layer 0."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from data.draft_vocab import load_vocab, maps_for, save_vocab
from train import distributed as dist
from train.drafts.eagle3.config import Eagle3Config
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.drafts.eagle3.layers import target_layers
from train.drafts.spec import BuildContext
from train.modeling.draft.dims import attention_dims
from train.modeling.draft.layers import Attention
from train.modeling.target import FrozenTarget


def draft_vocab(cfg: Eagle3Config, target: FrozenTarget, size: int, ctx: BuildContext) -> torch.Tensor:
    """Load the d2t map, or build it from the training data's token counts (same on every rank), save it."""
    tok = target.tokenizer
    if cfg.vocab_path:
        d2t, _ = load_vocab(cfg.vocab_path, tok)
        if len(d2t) != size:
            raise ValueError(f"draft.vocab_path={cfg.vocab_path} has {len(d2t)} tokens, expected {size}")
        return d2t
    # Counted over the tokens the draft is trained to predict (the loss mask), in the run's own data.
    d2t, t2d, coverage = maps_for(tok, ctx.token_counts(), size)
    out = Path(ctx.output_dir) / "draft_vocab.safetensors"
    if dist.is_main():
        save_vocab(out, d2t, t2d, tok, {"size": size, "coverage": f"{coverage:.6f}"})
    dist.print0(f"[train] draft vocabulary: {size} tokens cover {coverage:.1%} of training tokens -> {out}")
    return d2t


def self_attend_init(attn: Attention) -> None:
    """Start an attention layer attending to each position itself: every query head of a key/value group gets
    the group's first query projection, doubled, and the group's key projection the same matrix, so a query
    meets its own key with score 4 |W x|^2 (rotary cancels at equal positions) and others with 4 (W x).(W y).

    Why: in the eagle3 layout the token being drafted from enters the head only through layer 0's attention,
    which at a random init spreads over all past positions (about 1 % of its weight on the current one on the
    tiny default); trained from there the head spends its first ~100k pretraining tokens learning to look at
    its own token (docs/scaling-laws.md). Heads of a group start equal; o_proj's distinct columns split them."""
    h, kv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim
    with torch.no_grad():
        q = attn.q_proj.weight.view(kv, h // kv, d, -1)
        first = 2.0 * q[:, :1]  # (kv, 1, d, in)
        q.copy_(first.expand_as(q))
        attn.k_proj.weight.copy_(first.reshape(kv * d, -1))


def build(cfg: Eagle3Config, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
    vocab = target.vocab_size
    size = cfg.draft_vocab_size or vocab
    dims = attention_dims(
        target.model.config, cfg.num_layers, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads
    )
    head = Eagle3Head(
        Eagle3HeadConfig(
            **dims,
            vocab_size=vocab,
            draft_vocab_size=size,
            feature_layers=list(target_layers(cfg, target.num_layers)),
            architecture=cfg.name,
            layout=cfg.layout,
            norm_before_residual=cfg.norm_before_residual,
            norm_before_fc=cfg.norm_before_fc,
        )
    )
    if cfg.self_attend_init:
        self_attend_init(head.layers[0].self_attn)
    if size < vocab:
        head.d2t.copy_(draft_vocab(cfg, target, size, ctx))
    # Start the head's LM head from the target's rows for its vocabulary: a far better start than random.
    with torch.no_grad():
        head.lm_head.weight.copy_(target.lm_head.weight[head.d2t].float())
    return head
