"""The shipped targets are what their builder says: each folder's config and parameter count match
builders.targets.make_config for its name, so the builder stays the one home of their shapes."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from builders.embedded import TARGETS
from builders.targets import make_config
from builders.tokenizer import load_tokenizer
from data.embedded_paths import EMBEDDED_DIR, TOKENIZER_DIR

SHAPE = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
         "intermediate_size", "vocab_size", "tie_word_embeddings")  # fmt: skip


@pytest.mark.parametrize("name", TARGETS)
def test_shipped_target_matches_its_builder(name: str) -> None:
    folder = EMBEDDED_DIR / "targets" / name
    built, shipped = make_config(name, load_tokenizer(TOKENIZER_DIR)), AutoConfig.from_pretrained(folder)
    assert {k: getattr(shipped, k) for k in SHAPE} == {k: getattr(built, k) for k in SHAPE}
    info = json.loads((folder / "build_info.json").read_text())
    h, f, v = built.hidden_size, built.intermediate_size, built.vocab_size
    kv = built.num_key_value_heads * (h // built.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h  # q, o; k, v; gate, up, down; two norms
    bias = 0 if name != "tiny-qwen2" else h + 2 * kv  # Qwen2's q/k/v biases
    embedding_and_norm = v * h + h  # tied: counted once
    assert info["parameters"] == built.num_hidden_layers * (per_layer + bias) + embedding_and_norm
