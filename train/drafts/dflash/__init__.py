"""DFlash: a block-diffusion drafter that drafts a block of tokens per forward (docs/dflash.md).
Importing the package registers its spec (train/drafts/__init__.py imports every draft module)."""

from train.drafts.dflash.spec import SPEC

__all__ = ["SPEC"]
