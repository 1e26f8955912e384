"""DFlash: a block-diffusion drafter that drafts a block of tokens in one forward (docs/dflash.md).

This folder is the whole algorithm: config.py (settings and defaults), head.py (vLLM's DFlashDraftModel
layout), blocks.py (anchors, block masks, slot targets, per-slot weights), objective.py, build.py (fused
layers, mask id, a fresh head), drafter.py (one forward per step in our engine) and export_vllm.py (the
layout vLLM 0.32 loads and published DFlash checkpoints use). SPEC below is its one registration."""

from __future__ import annotations

from train.drafts.dflash import export_vllm
from train.drafts.dflash.build import build, target_layers
from train.drafts.dflash.config import DFlashConfig
from train.drafts.dflash.drafter import DFlashDrafter
from train.drafts.dflash.head import DFlashHead
from train.drafts.dflash.objective import DFlashObjective
from train.drafts.spec import DraftSpec, embedding_and_lm_head

SPEC = DraftSpec(
    name="dflash",
    config=DFlashConfig,
    head=DFlashHead,
    build=build,
    objective=DFlashObjective,
    drafter=DFlashDrafter,
    target_layers=target_layers,
    frozen_shared_params=embedding_and_lm_head,  # the target's embedding and LM head, both read, not trained
    formats=(export_vllm,),
    serve={"vllm": (export_vllm.NAME, "dflash")},
)
