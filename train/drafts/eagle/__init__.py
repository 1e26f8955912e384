"""EAGLE-1/2: fc(token embedding ++ target feature) -> decoder layer(s) -> the next feature.

This folder is the whole algorithm: config.py (its settings and their defaults), head.py (the nn.Module),
objective.py (its loss), drafter.py (how eval drafts with it), export.py (the original EAGLE layout that
vLLM and SGLang load). SPEC below is its one registration."""

from __future__ import annotations

from torch import nn

from train.drafts.eagle import export
from train.drafts.eagle.config import EagleConfig
from train.drafts.eagle.drafter import EagleDrafter
from train.drafts.eagle.head import EagleHead, EagleHeadConfig
from train.drafts.eagle.objective import EagleObjective
from train.drafts.spec import BuildContext, DraftSpec, embedding_and_lm_head
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget


def build(cfg: EagleConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
    dims = attention_dims(
        target.model.config, cfg.num_layers, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads
    )
    return EagleHead(
        EagleHeadConfig(
            **dims,
            vocab_size=target.vocab_size,
            architecture=cfg.name,
            first_layer_input_norm=cfg.first_layer_input_norm,
            fc_bias=cfg.fc_bias,
        )
    )


def target_layers(cfg: object, depth: int) -> tuple[int, ...]:
    return ()  # the target's last hidden state, which every draft gets


SPEC = DraftSpec(
    name="eagle",
    config=EagleConfig,
    head=EagleHead,
    build=build,
    objective=EagleObjective,
    drafter=EagleDrafter,
    target_layers=target_layers,
    frozen_shared_params=embedding_and_lm_head,  # reads the embedding, decodes with the LM head
    formats=(export,),
    serve={"vllm": (export.NAME, "eagle")},
)
