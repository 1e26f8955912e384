"""The target's own sampling distribution (temperature, top-p) and draws from it.

Speculative sampling is lossless with respect to exactly this distribution, so drafting, verification and
the plain-decoding baseline all call the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 = greedy (argmax); verification then keeps the longest agreeing path
    top_p: float = 1.0  # nucleus: keep the smallest set of tokens whose probability reaches top_p

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32) over the last dim; one-hot on the argmax when greedy."""
        logits = logits.float()
        if self.greedy:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # Keep a token when the mass strictly before it is below top_p (the top token always stays).
            drop = (sorted_p.cumsum(-1) - sorted_p) >= self.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    def choose(self, logits: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """One token per row of logits (..., V) -> (...)."""
        if self.greedy:
            return logits.argmax(-1)
        return sample(self.probs(logits), gen)


def sample(probs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=gen).reshape(probs.shape[:-1])
