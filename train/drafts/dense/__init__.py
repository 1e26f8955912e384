"""A stand-alone small causal LM sharing the target's tokenizer (what HF assisted generation uses).

This folder is the whole algorithm: config.py, head.py (a transformers causal LM), objective.py, drafter.py,
export.py (a plain HF model folder). SPEC below is its one registration.
"""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.dense import export
from train.drafts.dense.config import DenseConfig
from train.drafts.dense.drafter import DenseDrafter, load_dense
from train.drafts.dense.head import DenseDraft, DenseDraftConfig
from train.drafts.dense.objective import DenseObjective
from train.drafts.spec import BuildContext, DraftSpec, no_shared_params, no_target_layers
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget


def build(cfg: DenseConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
    vocab = target.vocab_size
    if cfg.pretrained_path:
        return DenseDraft.from_pretrained(cfg.pretrained_path, vocab)
    hf = target.model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures"):
        hf.pop(key, None)
    dims = attention_dims(target.model.config, cfg.num_layers, cfg.intermediate_size, cfg.num_heads)
    hidden = cfg.hidden_size or dims["hidden_size"]
    heads = cfg.num_heads or max(1, hidden // dims["head_dim"])
    hf.update(
        model_type=cfg.model_type or hf["model_type"],
        num_hidden_layers=cfg.num_layers,
        hidden_size=hidden,
        intermediate_size=cfg.intermediate_size
        or (dims["intermediate_size"] * hidden) // dims["hidden_size"],
        num_attention_heads=heads,
        num_key_value_heads=cfg.num_kv_heads or heads,
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


def make_drafter(head: nn.Module, target: FrozenTarget) -> DenseDrafter:
    return DenseDrafter(head.model)  # our export wraps the HF causal LM the drafter runs


def load_plain(path: str, target: FrozenTarget) -> DenseDrafter:
    return DenseDrafter(load_dense(path, target))


SPEC = DraftSpec(
    name="dense",
    config=DenseConfig,
    head=DenseDraft,
    build=build,
    objective=DenseObjective,
    drafter=make_drafter,
    target_layers=no_target_layers,  # the target's last hidden state (and logits), which every draft gets
    frozen_shared_params=no_shared_params,  # its own embedding and LM head
    formats=(export,),
    serve={"vllm": (export.NAME, "draft_model")},
    load_plain=load_plain,
)
