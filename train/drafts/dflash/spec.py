"""DFlash's one registration: the head, how to build it from the run config, its objective, the draft.*
fields it reads, the target parameters it shares (embedding and LM head, both frozen)."""

from __future__ import annotations

from torch import nn

from train.drafts.base import BuildContext, DraftSpec, embedding_and_lm_head, register
from train.drafts.dflash.build import build_head
from train.drafts.dflash.head import DFlashHead
from train.drafts.dflash.objective import DFlashObjective
from train.modeling.target import FrozenTarget
from train.objectives.base import LossSettings
from train.settings import DraftConfig


def build(cfg: DraftConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
    return build_head(
        target,
        num_layers=cfg.num_layers,
        block_size=cfg.block_size,
        feature_layers=cfg.feature_layers,
        mask_token_id=cfg.mask_token_id,
        intermediate_size=cfg.intermediate_size,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_kv_heads,
    )


def objective(cfg: LossSettings) -> DFlashObjective:
    st = cfg.stage
    return DFlashObjective((st.divergence, st.temperature, st.top_k), cfg.draft.dflash_gamma, cfg.draft.max_anchors)


SPEC = register(
    DraftSpec(
        name="dflash",
        head=DFlashHead,
        build=build,
        objective=objective,
        fields=frozenset(
            {
                "num_layers",
                "intermediate_size",
                "num_heads",
                "num_kv_heads",
                "feature_layers",
                "block_size",
                "mask_token_id",
                "dflash_gamma",
                "max_anchors",
            }
        ),
        frozen_shared_params=embedding_and_lm_head,
    )
)
