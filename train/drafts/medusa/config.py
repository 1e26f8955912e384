"""`draft=medusa`: the Medusa heads' settings. These defaults are the only defaults (Hydra's draft/medusa
option is registered from this class)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MedusaConfig:
    name: str = "medusa"
    medusa_heads: int = 4  # K heads proposing tokens t+2 .. t+K+1
    num_layers: int = 1  # residual blocks per head
    share_lm_head: bool = True  # heads reuse the target's frozen LM head; false = K x vocab x hidden more
    ttt_decay: float = 0.8  # head k's loss weight is decay**k
