"""What every draft objective returns, the signature the loss seam calls, and the settings it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetFeatures
from train.settings import StageConfig


@dataclass
class LossOutput:
    loss: torch.Tensor  # what backward() sees
    # Detached sums, incl. "count"; summed over steps and ranks before dividing (rule 7).
    stats: dict[str, torch.Tensor]


class Objective(Protocol):
    """Turns (draft, target features of a token batch) into a loss. One per draft architecture."""

    def __call__(
        self,
        draft: nn.Module,
        target: FrozenTarget,
        input_ids: torch.Tensor,
        features: TargetFeatures,
        loss_mask: torch.Tensor,
        training: bool,
        packing: Packing | None = None,
    ) -> LossOutput:
        """packing: the layout of packed chats (several conversations per row), or None for one per row.
        With it, no attention and no input shift may cross a conversation, nor a loss span two."""
        ...


class LossSettings(Protocol):
    """The part of the run config an objective reads (a `TrainConfig` is one)."""

    @property
    def stage(self) -> StageConfig: ...

    @property
    def draft(self) -> Any: ...  # the algorithm's own config class (train/drafts/<name>/config.py)


class ObjectiveSettings:
    """The stage's loss settings every objective reads from the run config, in one place; an objective reads
    its algorithm's own settings (cfg.draft) itself."""

    def __init__(self, cfg: LossSettings) -> None:
        st = cfg.stage
        self.feature_weight = st.feature_weight
        self.token_weight = st.token_weight
        self.data_ce_weight = st.data_ce_weight
        self.divergence = (st.divergence, st.temperature, st.top_k)  # divergence_sum's trailing arguments
