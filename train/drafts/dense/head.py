"""A stand-alone small causal LM as the draft (what HF assisted generation uses): any `transformers`
architecture, sharing the target's tokenizer, built from a config dict or loaded from a local checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM


@dataclass
class DenseDraftConfig:
    vocab_size: int
    hf_config: dict[str, Any] = field(
        default_factory=dict
    )  # a transformers config (to_dict()), incl. model_type
    architecture: str = "dense"

    def to_dict(self) -> dict:
        return asdict(self)


class DenseDraft(nn.Module):
    config_class = DenseDraftConfig

    def __init__(self, config: DenseDraftConfig) -> None:
        super().__init__()
        self.config = config
        hf = dict(config.hf_config)
        model_type = hf.pop("model_type")
        self.model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **hf))

    @classmethod
    def from_pretrained(cls, path: str, vocab_size: int) -> DenseDraft:
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        draft = cls(DenseDraftConfig(vocab_size=vocab_size, hf_config=loaded.config.to_dict()))
        draft.model.load_state_dict(loaded.state_dict())
        return draft

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Token ids -> (B, T, V) logits; extra kwargs (past_key_values, use_cache) go to the HF model."""
        return self.model(input_ids=input_ids, **kwargs).logits
