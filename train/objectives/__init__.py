"""One objective per draft architecture (a file here), named by its spec in `train/drafts/`."""

from train.objectives.base import LossOutput, LossSettings, Objective

__all__ = ["LossOutput", "LossSettings", "Objective"]
