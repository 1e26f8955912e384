"""A draft that predicts over a subset of the target's vocabulary (EAGLE-3's reduced draft vocabulary).

The tree search (train.decoding.trees) runs log-softmax, top-k and sampling over the draft's own logits,
which is exact: a target token outside the draft vocabulary has probability 0 under the draft, so the
full-vocabulary distribution is the reduced one with zeros added. Only the ids the search picks are mapped to
target ids, and a sampled chain's q is widened to the target vocabulary once per proposal (verification
reads q at target ids), never per draft forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ReducedVocab:
    d2t: torch.Tensor  # (V_draft,) long: the target id of each draft id (the head's buffer, not a copy)
    target_size: int  # the target's vocabulary size, what q's last dim must be for verification

    def to_target(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return self.d2t[draft_ids]

    def widen(self, q: torch.Tensor) -> torch.Tensor:
        """(..., V_draft) probabilities -> (..., target_size), zero outside the draft vocabulary."""
        full = q.new_zeros(*q.shape[:-1], self.target_size)
        return full.index_copy_(-1, self.d2t, q)
