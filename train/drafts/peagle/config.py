"""`draft=peagle`: the P-EAGLE head's settings, the EAGLE-3 head's (eagle3/config.py, inherited: one home for
each of them) plus the two parallel drafting adds. These defaults are the only defaults (Hydra's draft/peagle
option is registered from this class). None = take the value from the target."""

from __future__ import annotations

from dataclasses import dataclass

from train.drafts.eagle3.config import Eagle3Config


@dataclass
class PEagleConfig(Eagle3Config):
    name: str = "peagle"
    # k, the tokens one forward drafts: slot 1 is the last token with its fused target features, slots 2..k
    # the mask token with the learned mask_hidden. P-EAGLE's counterpart of EAGLE-3's unroll depth, so it
    # reuses that knob (the objective reads it as the number of slots; eval's draft_length may not exceed it).
    ttt_steps: int = 4
    ttt_decay: float = 0.8  # loss weight of slot j+1 is decay**j, as EAGLE-3 weighs its unroll steps
    # Which embedding row the mask slots read (< the target's vocab_size); None = the tokenizer's mask token,
    # else its EOS (build.default_mask_token_id says why any row is safe for P-EAGLE).
    mask_token_id: int | None = None
    # EAGLE-3's default became on (2026-12-06, measured on EAGLE-3/Scylla heads only); P-EAGLE keeps the start
    # its figures (docs/peagle.md, docs/parallel-drafters.md) were measured with until it is measured itself.
    self_attend_init: bool = False
