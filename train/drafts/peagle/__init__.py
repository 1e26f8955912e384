"""P-EAGLE: the EAGLE-3 head trained to draft k tokens in one forward (a mask token and a learned mask_hidden
for the slots that have no target feature); served by vLLM as EAGLE-3 with `parallel_drafting: true`.

This folder adds only what parallel drafting needs and imports the rest from train/drafts/eagle3/ (layers,
head, build, vocabulary, export helpers): config.py (the EAGLE-3 settings plus the mask id), head.py
(mask_hidden), build.py (the mask id), objective.py (all k slots in one pass), drafter.py (one forward per
chain; trees step by step as EAGLE-3) and export_speculators.py (the speculators layout vLLM 0.32 loads as
PEagle). SPEC below is its one registration."""

from __future__ import annotations

from train.drafts.eagle3.layers import target_layers
from train.drafts.peagle import export_speculators
from train.drafts.peagle.build import build
from train.drafts.peagle.config import PEagleConfig
from train.drafts.peagle.drafter import PEagleDrafter
from train.drafts.peagle.head import PEagleHead
from train.drafts.peagle.objective import PEagleObjective
from train.drafts.spec import DraftSpec, embedding_params

SPEC = DraftSpec(
    name="peagle",
    config=PEagleConfig,
    head=PEagleHead,
    build=build,
    objective=PEagleObjective,
    drafter=PEagleDrafter,
    target_layers=target_layers,
    frozen_shared_params=embedding_params,  # its own (reduced) LM head is trained, as EAGLE-3's
    formats=(export_speculators,),
    serve={"vllm": (export_speculators.NAME, "eagle3")},
    serve_options={"vllm": export_speculators.SERVE_OPTIONS},
)
