"""The EAGLE-3 drafter as it was before the tree search moved to the draft vocabulary
(train/drafts/eagle3/drafter.py): every draft forward scattered the head's reduced logits into a
target-vocabulary tensor of -inf, and log-softmax, top-k and sampling ran over the whole target vocabulary.
Kept only as the oracle the new path must equal (tests/test_eagle3_reduced_vocab.py) and as the "before" of
tests/bench/bench_eagle3_drafting.py."""

from __future__ import annotations

import torch
from torch import nn

from train.drafts.eagle3.drafter import Eagle3Drafter
from train.modeling.target import FrozenTarget


class _TargetVocabHead(nn.Module):
    """The old adapter: the inner Eagle3Head's forward, its logits widened to the target vocabulary."""

    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        super().__init__()
        self.inner = head
        self.vocab = target.vocab_size

    def new_cache(self):  # noqa: ANN201 - the head's KVCache
        return self.inner.new_cache()

    def forward(
        self,
        embeds: torch.Tensor,
        feats: torch.Tensor,
        verified: bool,
        **kwargs,  # noqa: ANN003
    ) -> torch.Tensor:
        if verified:
            return self.inner(embeds, layer_features=feats, **kwargs)
        return self.inner(embeds, feats, **kwargs)

    def logits(self, hidden: torch.Tensor, lm_head: nn.Module | None = None) -> torch.Tensor:
        reduced = self.inner.logits(hidden)
        full = reduced.new_full((*reduced.shape[:-1], self.vocab), float("-inf"))
        return full.index_copy(-1, self.inner.d2t, reduced)


class FullVocabEagle3Drafter(Eagle3Drafter):
    """Eagle3Drafter searching over the target vocabulary: the old head adapter, no reduced-vocabulary map."""

    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        super().__init__(head, target)
        self.head = _TargetVocabHead(head, target)
        self.start(1)

    def reduced_vocab(self) -> None:
        return None
