"""EAGLE-3, and Scylla (its deep variant: the same head with N decoder layers, the capacity axis of the
scaling laws): fused low/mid/high target layers, a reduced draft vocabulary, training-time test.

This folder is the whole algorithm: config.py (settings and defaults), head.py, objective.py (training-time
test), drafter.py, export_speculators.py (vLLM) and export_sglang.py (SGLang / the EAGLE-3 checkpoints),
export_shared.py (what those two share). SPEC below is its one registration; `scylla` is declared here, as
an alias with two layers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from data.draft_vocab import build_maps, load_vocab, save_vocab
from train import distributed as dist
from train.drafts.eagle3 import export_sglang, export_speculators
from train.drafts.eagle3.config import Eagle3Config
from train.drafts.eagle3.drafter import Eagle3Drafter
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.drafts.eagle3.layers import target_layers
from train.drafts.eagle3.objective import Eagle3Objective
from train.drafts.spec import BuildContext, DraftSpec, embedding_params
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
    d2t, t2d, coverage = build_maps(ctx.token_counts(), size, tok.all_special_ids)
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
    its own token (eval/laws/RESULTS.md). Heads of a group start equal; o_proj's distinct columns split them."""
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


SPEC = DraftSpec(
    name="eagle3",
    config=Eagle3Config,
    head=Eagle3Head,
    build=build,
    objective=Eagle3Objective,
    drafter=Eagle3Drafter,
    target_layers=target_layers,
    frozen_shared_params=embedding_params,  # its own (reduced) LM head is trained
    formats=(export_speculators, export_sglang),
    serve={"vllm": (export_speculators.NAME, "eagle3")},
    # Scylla: the deep EAGLE-3 head, the capacity axis (`python -m train -m draft=scylla
    # draft.num_layers=1,2,4`; 1 is EAGLE-3's layout exactly).
    aliases={"scylla": {"num_layers": 2}},
)
