"""DFlash: a block-diffusion drafter that drafts a block of tokens per forward (docs/dflash.md)."""
