"""The frozen target: a Hugging Face causal LM that exposes the features a draft trains on.

The target is loaded by `data.target_io.load_target` (`AutoModelForCausalLM`, the one loader every job
shares), in eval mode with gradients off, and is never handed to DeepSpeed: only the draft is trained, so
only the draft is wrapped, sharded and checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from data.fingerprint import target_fingerprints, tokenizer_fingerprint
from data.target_io import ATTENTION, DTYPES, load_target, resolve_tokenizer


@dataclass
class TargetFeatures:
    hidden: torch.Tensor  # (B, T, H): last hidden state after the final norm, what the LM head reads
    logits: torch.Tensor  # (B, T, V)
    layers: torch.Tensor | None = (
        None  # (B, T, n*H): the hidden_states a draft fuses (its spec's target_layers)
    )


class FrozenTarget(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        name_or_path: str,
        tokenizer_path: str | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer_path = tokenizer_path  # target.tokenizer (None = the target's own folder)
        self.model = model
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path
        self.model.eval()
        self.model.requires_grad_(False)

    @classmethod
    def load(
        cls,
        name_or_path: str,
        dtype: str = "float32",
        device: torch.device | str = "cpu",
        attn_implementation: str = "auto",
        tokenizer_path: str | None = None,
    ) -> FrozenTarget:
        model, tokenizer = load_target(name_or_path, dtype, device, attn_implementation, tokenizer_path)
        return cls(model, tokenizer, name_or_path, tokenizer_path)

    # --- shapes -------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)

    def fingerprint(self) -> dict[str, str]:
        return {
            "target": self.name_or_path,
            **target_fingerprints(self.name_or_path, self.model),  # by weights, and the old probe
            "tokenizer_fingerprint": tokenizer_fingerprint(self.tokenizer),
            "tokenizer": resolve_tokenizer(self.name_or_path, self.tokenizer_path),
        }

    # --- forward ------------------------------------------------------------------------------------
    @torch.no_grad()
    def features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        layers: Sequence[int] = (),
    ) -> TargetFeatures:
        """attention_mask: 2D padding mask, or 4D for packed rows (train/modeling/doc_mask.py) together with
        position_ids that restart per conversation. layers: hidden_states indices (0 = embeddings, i = output of
        decoder layer i) concatenated into `TargetFeatures.layers`: the draft spec's `target_layers`."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
        )
        fused = torch.cat([out.hidden_states[i] for i in layers], dim=-1) if layers else None
        return TargetFeatures(hidden=out.hidden_states[-1], logits=out.logits, layers=fused)

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers


@dataclass
class TargetConfig:
    """Which frozen target to train against (conf group `target/`)."""

    name_or_path: str = "???"  # HF hub name or local directory (a local directory wins; hubs need network)
    tokenizer: str | None = None  # tokenizer path when it is not stored with the model
    dtype: str = "float32"  # float32 | bfloat16 | float16: the dtype the frozen target runs in
    attn_implementation: str = "auto"  # auto = flash_attention_2 on CUDA when installed, else sdpa
    family: str = ""  # free text shown in reports, e.g. "llama-3.1"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"target.dtype={self.dtype!r}: expected one of {sorted(DTYPES)}")
        if self.attn_implementation not in ATTENTION:
            raise ValueError(
                f"target.attn_implementation={self.attn_implementation!r}: expected one of {ATTENTION}"
            )

    def load(self, device: torch.device | str = "cpu") -> FrozenTarget:
        return FrozenTarget.load(
            self.name_or_path, self.dtype, device, self.attn_implementation, self.tokenizer
        )
