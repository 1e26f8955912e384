"""Medusa: K residual heads on the target's last hidden state propose tokens t+2 .. t+K+1.

This folder is the whole algorithm: config.py, head.py (K residual heads), objective.py, drafter.py (a dynamic tree over
the heads), export.py (the FasterDecoding/Medusa layout). SPEC below is its one registration.
"""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.medusa import export
from train.drafts.medusa.config import MedusaConfig
from train.drafts.medusa.drafter import MedusaDrafter
from train.drafts.medusa.head import MedusaHeadConfig, MedusaHeads
from train.drafts.medusa.objective import MedusaObjective
from train.drafts.spec import BuildContext, DraftSpec, lm_head_params, no_target_layers
from train.modeling.target import FrozenTarget


def build(cfg: MedusaConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
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


SPEC = DraftSpec(
    name="medusa",
    config=MedusaConfig,
    head=MedusaHeads,
    build=build,
    objective=MedusaObjective,
    drafter=MedusaDrafter,
    target_layers=no_target_layers,  # the target's last hidden state (and logits), which every draft gets
    frozen_shared_params=lm_head_params,  # the shared LM head (share_lm_head=true)
    formats=(export,),
    serve={"vllm": (export.NAME, "medusa")},
)
