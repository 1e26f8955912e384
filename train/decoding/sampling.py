"""The target's own sampling distribution (temperature, top-p) and draws from it.

Speculative sampling is lossless with respect to exactly this distribution, so drafting, verification and
the plain-decoding baseline all call the same function. It is built from the logits warpers that
`transformers`' `generate` applies for the same `temperature` / `top_p` (what `python -m data regenerate`
samples with), so eval and regeneration sample from one distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 = greedy (argmax); verification then keeps the longest agreeing path
    top_p: float = 1.0  # nucleus: keep the smallest set of tokens whose probability reaches top_p

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def warpers(self) -> LogitsProcessorList:
        """What `generate(do_sample=True, temperature=..., top_p=..., top_k=None)` applies, in its order;
        each is skipped at its no-op value as `generate` skips it."""
        procs = LogitsProcessorList()
        if self.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(self.temperature))
        if self.top_p < 1.0:  # keeps the smallest top set reaching top_p; the top token always stays
            procs.append(TopPLogitsWarper(self.top_p))
        return procs

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32) over the last dim; one-hot on the argmax when greedy."""
        logits = logits.float()
        if self.greedy:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
        flat = logits.reshape(-1, logits.shape[-1])  # the warpers take (rows, vocab) and ignore input_ids
        return torch.softmax(self.warpers()(None, flat), dim=-1).reshape(logits.shape)

    def choose(self, logits: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """One token per row of logits (..., V) -> (...)."""
        if self.greedy:
            return logits.argmax(-1)
        return sample(self.probs(logits), gen)


def sample(probs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=gen).reshape(probs.shape[:-1])
