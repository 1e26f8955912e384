"""Medusa: K residual heads on the target's last hidden state propose tokens t+2 .. t+K+1."""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.base import BuildContext, DraftSpec, lm_head_params, register
from train.modeling.draft.medusa import MedusaHeadConfig, MedusaHeads
from train.modeling.target import FrozenTarget
from train.objectives.medusa import MedusaObjective
from train.settings import DraftConfig


def build(cfg: DraftConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
    heads = MedusaHeads(
        MedusaHeadConfig(
            hidden_size=target.hidden_size,
            vocab_size=target.vocab_size,
            num_heads=cfg.medusa_heads,
            num_layers=cfg.num_layers,
            share_lm_head=cfg.share_lm_head,
        )
    )
    if heads.lm_heads is not None:
        with torch.no_grad():
            for lm in heads.lm_heads:
                lm.weight.copy_(target.lm_head.weight.float())
    return heads


SPEC = register(
    DraftSpec(
        name="medusa",
        head=MedusaHeads,
        build=build,
        objective=MedusaObjective,
        fields=frozenset({"medusa_heads", "num_layers", "share_lm_head", "ttt_decay"}),
        frozen_shared_params=lm_head_params,  # the shared LM head (share_lm_head=true)
    )
)
