"""`draft=dflash`: the DFlash head's settings. These defaults are the only defaults (Hydra's draft/dflash
option is registered from this class). None = take the value from the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DFlashConfig:
    name: str = "dflash"
    num_layers: int = 1  # decoder layers: the capacity axis (draft.num_layers=1,2,4,8)
    block_size: int = 8  # the last accepted token + block_size - 1 mask slots = tokens drafted per forward
    intermediate_size: int | None = None  # MLP width; None = the target's
    num_heads: int | None = None  # attention heads; None = the target's
    num_kv_heads: int | None = None  # key/value heads; None = the target's
    feature_layers: list[int] | None = None  # target hidden_states fused; None = up to 5 over 1..L-1
    mask_token_id: int | None = None  # id of the mask slots; None = the tokenizer's mask token, else EOS
    gamma: float = 4.0  # slot i >= 1 weighs exp(-(i - 1) / gamma) in the loss (slot 0, the anchor, none)
    max_anchors: int = 32  # blocks drawn per training row, all run in one forward
