"""Targets in the exact config shapes of real model families, built at test time with random weights.

The shipped tiny targets are plain Llama/Qwen2 with 4,096 tokens; real targets differ in ways that break
drafts: rope scaling (Llama-3.1's `llama3` type), grouped-query ratios, q/k/v biases (Qwen2), tied or untied
embeddings, and embedding tables larger than the tokenizer (Qwen2.5 pads to a multiple of 128). Each family
keeps its real config.json as published (4.x-style keys, as users' downloaded folders have them) and only
its depth and width are shrunk; the shipped tokenizer stands in for the real one, so len(tokenizer) (4,096)
is below vocab_size exactly as with Qwen2.5.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tests.conftest import EMBEDDED

# The published config.json values that shape a draft (from each model card's config.json on the HF hub).
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    # meta-llama/Llama-2-7b-chat-hf: multi-head attention, 32,000 tokens, plain RoPE (theta 10,000).
    "llama-2-7b-chat": {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": False, "attention_bias": False,
        "hidden_act": "silu",
    },
    # meta-llama/Llama-3.1-8B-Instruct: GQA 32:8, 128,256 tokens, untied, llama3 rope scaling to 131,072.
    "llama-3.1-8b-instruct": {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
    },
    # Qwen/Qwen2.5-7B-Instruct: GQA 28:4, q/k/v biases (built into Qwen2), 152,064 embedding rows for a
    # 151,665-token tokenizer, untied, theta 1e6.
    "qwen2.5-7b-instruct": {
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 152064,
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 131072, "use_sliding_window": False,
        "max_window_layers": 28, "tie_word_embeddings": False, "hidden_act": "silu",
    },
    # Qwen/Qwen2.5-0.5B-Instruct: the small Qwen2.5 sizes tie the LM head to the embedding (151,936 rows).
    "qwen2.5-0.5b-instruct": {
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936,
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False,
        "max_window_layers": 21, "tie_word_embeddings": True, "hidden_act": "silu",
    },
}  # fmt: skip

HEAD_DIM = 16  # shrunk width: every family keeps its query:key-value head ratio at this head size
VLLM_HEAD_DIM = (
    64  # vLLM's CPU attention has no kernel for head_dim 16 ("Unsupported CPU attention configuration")
)
NUM_LAYERS = 4  # enough for EAGLE-3's low / middle / high feature layers (1, 2, 3)


def shrunk_config(name: str, tokenizer_ids: dict[str, int], head_dim: int = HEAD_DIM) -> dict[str, Any]:
    """The real config with depth and width cut down; vocabulary, rope, bias and tying untouched."""
    real = REAL_CONFIGS[name]
    ratio = real["num_attention_heads"] // real["num_key_value_heads"]
    kv_heads = 1 if ratio > 1 else 4  # GQA keeps its ratio with one KV head; MHA keeps 4 = 4 heads
    heads = kv_heads * ratio
    cfg = {
        **real,
        "hidden_size": heads * head_dim,
        "intermediate_size": 2 * heads * head_dim,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        **tokenizer_ids,  # special-token ids of the stand-in tokenizer, not the real one's
    }
    if "head_dim" in real:
        cfg["head_dim"] = head_dim
    if "max_window_layers" in real:
        cfg["max_window_layers"] = NUM_LAYERS
    return cfg


def build_family_target(name: str, out: Path, seed: int = 0, head_dim: int = HEAD_DIM) -> Path:
    """A target folder (config.json as published, random weights, the shipped tokenizer) at `out`."""
    tok = AutoTokenizer.from_pretrained(EMBEDDED / "tokenizer")
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    config_json = shrunk_config(name, ids, head_dim)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_json, indent=2))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out))
    model.save_pretrained(out)
    # save_pretrained rewrites config.json in this transformers' own style; users' folders hold the original.
    (out / "config.json").write_text(json.dumps(config_json, indent=2))
    for f in (EMBEDDED / "tokenizer").iterdir():
        shutil.copy(f, out / f.name)
    return out
