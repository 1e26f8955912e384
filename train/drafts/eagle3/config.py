"""`draft=eagle3` (and its alias `draft=scylla`, the deep head: see SPEC.aliases): the EAGLE-3 head's
settings. These defaults are the only defaults (Hydra's draft/eagle3 and draft/scylla options are registered
from this class). None = take the value from the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Eagle3Config:
    name: str = "eagle3"
    num_layers: int = 1  # decoder layers; 1 is EAGLE-3's layout, scylla sweeps it (draft.num_layers=1,2,4)
    intermediate_size: int | None = None  # MLP width; None = the target's
    num_heads: int | None = None  # attention heads; None = the target's
    num_kv_heads: int | None = None  # key/value heads; None = the target's
    feature_layers: list[int] | None = None  # target hidden_states fused; None = low/mid/high (target_layers)
    layout: str = (
        "eagle3"  # eagle3 = the published layout SGLang/vLLM load; draftforge = our older input_proj
    )
    # layout=eagle3 only: speculators 0.9.0's default EAGLE-3 layout has both true (vLLM loads both)
    norm_before_residual: bool = False  # layer 0's residual is the normed feature, not the raw one
    norm_before_fc: bool = False  # one RMSNorm over the fused target features before fc
    # Layer 0 starts attending to the current position (k = q at init); the token just drafted reaches an
    # eagle3-layout head only through that attention. Weights only: export/serving unchanged. On by default
    # since 2026-12-06: depth-2 Scylla at 200k tokens, 3 seeds x 64 prompts, tree tau at T=0 2.267 [2.186,
    # 2.334] against 2.003 [1.936, 2.072] off; T=1 1.319 vs 1.291, intervals overlapping (docs/scaling-laws.md).
    self_attend_init: bool = True
    draft_vocab_size: int | None = (
        2048  # reduced LM-head vocabulary (of the tiny targets' 4096); None = target's
    )
    vocab_path: str | None = None  # d2t/t2d map (python -m data.draft_vocab); None = build from the data
    ttt_steps: int = 3  # training-time-test unroll depth (EAGLE-3 unrolls 7 on GPUs; 3 keeps CPU steps short)
    ttt_decay: float = 0.8  # loss weight of unroll step j is decay**j
