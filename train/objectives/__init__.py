"""Draft architecture name -> objective. A new draft is a new objective file plus one entry here."""

from __future__ import annotations

from train.config import TrainConfig
from train.objectives.base import LossOutput, Objective
from train.objectives.dense import DenseObjective
from train.objectives.eagle import EagleObjective
from train.objectives.eagle3 import Eagle3Objective
from train.objectives.medusa import MedusaObjective

OBJECTIVES: dict[str, type] = {
    "eagle": EagleObjective,
    "eagle3": Eagle3Objective,
    "scylla": Eagle3Objective,
    "medusa": MedusaObjective,
    "dense": DenseObjective,
}


def objective_for(cfg: TrainConfig) -> Objective:
    return OBJECTIVES[cfg.draft.name](cfg)


__all__ = ["OBJECTIVES", "LossOutput", "Objective", "objective_for"]
