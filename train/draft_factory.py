"""Draft construction from the run config: dimensions default to the target's, or an export seeds it.

One builder per architecture; each derives what it can from the target's config so that a new target needs
no draft settings at all.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.blocks import build_blocks
from data.draft_vocab import build_maps, load_vocab, save_vocab
from data.spec import split_spec
from train import distributed as dist
from train.config import TrainConfig
from train.modeling.draft.dense import DenseDraft, DenseDraftConfig
from train.modeling.draft.eagle import EagleHead, EagleHeadConfig
from train.modeling.draft.eagle3 import Eagle3Head, Eagle3HeadConfig
from train.modeling.draft.io import load_draft
from train.modeling.draft.layers import target_rope
from train.modeling.draft.medusa import MedusaHeadConfig, MedusaHeads
from train.modeling.target import FrozenTarget


def _attention_dims(cfg: TrainConfig, target: FrozenTarget) -> dict[str, Any]:
    tc = target.model.config
    heads = cfg.draft.num_heads or tc.num_attention_heads
    return {
        "hidden_size": tc.hidden_size,
        "intermediate_size": cfg.draft.intermediate_size or tc.intermediate_size,
        "num_heads": heads,
        "num_kv_heads": cfg.draft.num_kv_heads or getattr(tc, "num_key_value_heads", None) or heads,
        "head_dim": tc.hidden_size // heads,
        "num_layers": cfg.draft.num_layers,
        **target_rope(tc),  # the draft rotates positions as its target does (any rope type)
        "rms_norm_eps": float(getattr(tc, "rms_norm_eps", 1e-6)),
    }


def default_feature_layers(num_layers: int) -> list[int]:
    """Low, middle and high target layers (hidden_states indices), as EAGLE-3 fuses them."""
    return sorted({1, max(1, num_layers // 2), max(1, num_layers - 1)})


def _draft_vocab(cfg: TrainConfig, target: FrozenTarget, size: int) -> torch.Tensor:
    """Load the d2t map, or build it from the training files (same result on every rank) and save it."""
    tok = target.tokenizer
    if cfg.draft.vocab_path:
        d2t, _ = load_vocab(cfg.draft.vocab_path, tok)
        if len(d2t) != size:
            raise ValueError(
                f"draft.vocab_path={cfg.draft.vocab_path} has {len(d2t)} tokens, expected {size}"
            )
        return d2t
    # Counted over the tokens the draft is trained to predict (the loss mask), from the run's own data.
    spec = split_spec(asdict(cfg.data), "train")
    if spec is None:
        raise ValueError("draft vocabulary: no training data to count tokens in (set draft.vocab_path)")
    blocks = build_blocks(spec, tok, "train data (draft vocabulary)")
    ids = blocks.input_ids.long()[blocks.loss_mask.bool()]
    counts = torch.bincount(ids, minlength=len(tok)).numpy()
    d2t, t2d, coverage = build_maps(counts, size, tok.all_special_ids)
    out = Path(cfg.output_dir) / "draft_vocab.safetensors"
    if dist.is_main():
        save_vocab(out, d2t, t2d, tok, {"size": size, "coverage": f"{coverage:.6f}"})
    dist.print0(f"[train] draft vocabulary: {size} tokens cover {coverage:.1%} of training tokens -> {out}")
    return d2t


def _build_eagle3(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    vocab = target.vocab_size
    size = cfg.draft.draft_vocab_size or vocab
    head = Eagle3Head(
        Eagle3HeadConfig(
            **_attention_dims(cfg, target),
            vocab_size=vocab,
            draft_vocab_size=size,
            feature_layers=list(cfg.draft.feature_layers or default_feature_layers(target.num_layers)),
            architecture=cfg.draft.name,
            layout=cfg.draft.layout,
        )
    )
    if size < vocab:
        head.d2t.copy_(_draft_vocab(cfg, target, size))
    # Start the head's LM head from the target's rows for its vocabulary: a far better start than random.
    with torch.no_grad():
        head.lm_head.weight.copy_(target.lm_head.weight[head.d2t].float())
    return head


def _build_medusa(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    heads = MedusaHeads(
        MedusaHeadConfig(
            hidden_size=target.hidden_size,
            vocab_size=target.vocab_size,
            num_heads=cfg.draft.medusa_heads,
            num_layers=cfg.draft.num_layers,
            share_lm_head=cfg.draft.share_lm_head,
        )
    )
    if heads.lm_heads is not None:
        with torch.no_grad():
            for lm in heads.lm_heads:
                lm.weight.copy_(target.lm_head.weight.float())
    return heads


def _build_dense(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    vocab = target.vocab_size
    if cfg.draft.pretrained_path:
        return DenseDraft.from_pretrained(cfg.draft.pretrained_path, vocab)
    hf = target.model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures"):
        hf.pop(key, None)
    dims = _attention_dims(cfg, target)
    hidden = cfg.draft.hidden_size or dims["hidden_size"]
    heads = cfg.draft.num_heads or max(1, hidden // dims["head_dim"])
    hf.update(
        model_type=cfg.draft.model_type or hf["model_type"],
        num_hidden_layers=cfg.draft.num_layers,
        hidden_size=hidden,
        intermediate_size=cfg.draft.intermediate_size
        or (dims["intermediate_size"] * hidden) // dims["hidden_size"],
        num_attention_heads=heads,
        num_key_value_heads=cfg.draft.num_kv_heads or heads,
        head_dim=hidden // heads,
        vocab_size=vocab,
    )
    draft = DenseDraft(DenseDraftConfig(vocab_size=vocab, hf_config=hf))
    if hidden == target.hidden_size:  # same width: start from the target's token embeddings
        with torch.no_grad():
            draft.model.get_input_embeddings().weight.copy_(
                target.model.get_input_embeddings().weight.float()
            )
    return draft


def _build_eagle(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    return EagleHead(
        EagleHeadConfig(
            **_attention_dims(cfg, target), vocab_size=target.vocab_size, architecture=cfg.draft.name
        )
    )


BUILDERS = {
    "eagle": _build_eagle,
    "eagle3": _build_eagle3,
    "scylla": _build_eagle3,
    "medusa": _build_medusa,
    "dense": _build_dense,
}


def _init_from(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    """Seed a stage from a previous stage's export (weights only: optimizer and schedule start fresh)."""
    path = cfg.stage.init_from
    fingerprint = target.fingerprint()
    head, meta = load_draft(path, fingerprint, target.vocab_size)
    arch = head.config.architecture
    if arch != cfg.draft.name:
        raise ValueError(
            f"stage.init_from={path}: export is a {arch!r} draft, but draft.name={cfg.draft.name!r}"
        )
    trained_on = meta.get("target_fingerprint")
    if trained_on and trained_on != fingerprint["target_fingerprint"]:
        raise ValueError(
            f"stage.init_from={path}: export was trained against target {meta.get('target')} "
            f"({trained_on}), this run's target is {target.name_or_path} ({fingerprint['target_fingerprint']})"
        )
    dist.print0(f"[train] initialised from {path} ({meta.get('stage')}, {meta.get('tokens_seen')} tokens)")
    return head


def build_draft(cfg: TrainConfig, target: FrozenTarget) -> nn.Module:
    if cfg.stage.init_from:
        head = _init_from(cfg, target)
    else:
        head = BUILDERS[cfg.draft.name](cfg, target)
    # The target must hand the stage exactly the layers this head fuses (empty for the others).
    target.feature_layers = list(getattr(head.config, "feature_layers", []) or [])
    return head


def frozen_shared_params(name: str, target: FrozenTarget) -> int:
    """Target parameters the draft uses but does not train (embedding, LM head): its real decode-time size."""
    embed = target.model.get_input_embeddings().weight
    head = target.lm_head.weight
    tied = embed.data_ptr() == head.data_ptr()
    both = embed.numel() + (0 if tied else head.numel())
    return {"eagle": both, "eagle3": embed.numel(), "scylla": embed.numel(), "medusa": head.numel()}.get(
        name, 0
    )
