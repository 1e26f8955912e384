"""EAGLE-3, and Scylla (its deep variant: the same head with N decoder layers, the capacity axis of the
scaling laws): fused low/mid/high target layers, a reduced draft vocabulary, training-time test.

This folder is the whole algorithm: config.py (settings and defaults), head.py, build.py (a fresh head),
layers.py (which target layers it fuses), objective.py (training-time test), drafter.py,
export_speculators.py (vLLM), export_sglang.py (SGLang, the EAGLE-3 checkpoints) and export_shared.py
(what those two share). SPEC below is its one registration; `scylla` is declared here, as
an alias with two layers."""

from __future__ import annotations

from train.drafts.eagle3 import export_sglang, export_speculators
from train.drafts.eagle3.build import build
from train.drafts.eagle3.config import Eagle3Config
from train.drafts.eagle3.drafter import Eagle3Drafter
from train.drafts.eagle3.head import Eagle3Head
from train.drafts.eagle3.layers import target_layers
from train.drafts.eagle3.objective import Eagle3Objective
from train.drafts.spec import DraftSpec, embedding_params

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
