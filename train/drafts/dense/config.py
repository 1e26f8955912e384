"""`draft=dense`: a stand-alone small causal LM sharing the target's tokenizer (what HF assisted generation
uses). These defaults are the only defaults (Hydra's draft/dense option is registered from this class).
None = take the value from the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DenseConfig:
    name: str = "dense"
    num_layers: int = 1  # decoder layers of the draft LM
    hidden_size: int | None = None  # width of the stand-alone LM; None = the target's
    intermediate_size: int | None = None  # MLP width; None = scaled from the target's
    num_heads: int | None = None  # attention heads; None = the target's head width
    num_kv_heads: int | None = None  # key/value heads; None = num_heads
    model_type: str | None = None  # transformers architecture (llama, qwen2, ...); None = the target's
    pretrained_path: str | None = None  # start from this HF causal LM (hub name or folder)
