"""What every draft objective shares: the output, the call signature, the stage's loss settings. Each
algorithm's own objective lives in its folder (train/drafts/<name>/objective.py)."""

from train.objectives.base import LossOutput, LossSettings, Objective

__all__ = ["LossOutput", "LossSettings", "Objective"]
