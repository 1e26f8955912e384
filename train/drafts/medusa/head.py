"""Medusa heads: K independent heads read the target's last hidden state at position t and predict the
tokens at t+2 .. t+K+1 (the target's own LM head already gives t+1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MedusaHeadConfig:
    hidden_size: int
    vocab_size: int
    num_heads: int = 4  # K: tokens proposed beyond the target's own next token
    num_layers: int = 1  # residual blocks per head
    share_lm_head: bool = True  # True: every head reuses the target's frozen LM head (far fewer parameters)
    architecture: str = "medusa"

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size)
        # Zero init: each head starts as the identity, i.e. as the target's own next-token prediction.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.silu(self.linear(x))


class MedusaHeads(nn.Module):
    config_class = MedusaHeadConfig

    def __init__(self, config: MedusaHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(
            nn.Sequential(*(ResBlock(config.hidden_size) for _ in range(config.num_layers)))
            for _ in range(config.num_heads)
        )
        self.lm_heads = (
            None
            if config.share_lm_head
            else nn.ModuleList(
                nn.Linear(config.hidden_size, config.vocab_size, bias=False) for _ in range(config.num_heads)
            )
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) target last hidden states -> (K, B, T, H) per-head hidden states."""
        return torch.stack([block(hidden) for block in self.blocks])

    def logits(self, head_hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        """(K, B, T, H) -> (K, B, T, V); the shared LM head is the target's (frozen)."""
        if self.lm_heads is None:
            return lm_head(head_hidden)
        return torch.stack([head(h) for head, h in zip(self.lm_heads, head_hidden, strict=True)])
