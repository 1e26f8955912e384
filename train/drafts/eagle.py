"""EAGLE-1/2: fc(token embedding ++ target feature) -> decoder layer(s) -> the next feature."""

from __future__ import annotations

from torch import nn

from train.drafts.base import BuildContext, DraftSpec, embedding_and_lm_head, register
from train.modeling.draft.dims import attention_dims
from train.modeling.draft.eagle import EagleHead, EagleHeadConfig
from train.modeling.target import FrozenTarget
from train.objectives.eagle import EagleObjective
from train.settings import DraftConfig


def build(cfg: DraftConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
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


SPEC = register(
    DraftSpec(
        name="eagle",
        head=EagleHead,
        build=build,
        objective=EagleObjective,
        fields=frozenset(
            {
                "num_layers",
                "intermediate_size",
                "num_heads",
                "num_kv_heads",
                "feature_noise",
                "first_layer_input_norm",
                "fc_bias",
            }
        ),
        frozen_shared_params=embedding_and_lm_head,  # reads the embedding, decodes with the LM head
    )
)
