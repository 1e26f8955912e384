"""Where the assets shipped in the repo live (built by `python -m builders.embedded`; see its README)."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_DIR: Path = Path(__file__).resolve().parent / "embedded"
CORPUS_DIR: Path = EMBEDDED_DIR / "corpus"  # pydocs_{train,valid}.jsonl.gz, dialogues_{train,valid}.jsonl.gz
TOKENIZER_DIR: Path = EMBEDDED_DIR / "tokenizer"  # 4096-token byte-level BPE with a ChatML template
TINY_LLAMA_DIR: Path = EMBEDDED_DIR / "targets" / "tiny-llama"  # ~4.2M-parameter LlamaForCausalLM
DEEP_LLAMA_DIR: Path = EMBEDDED_DIR / "targets" / "deep-llama"  # ~13.7M-parameter LlamaForCausalLM, 16 layers
TINY_QWEN2_DIR: Path = EMBEDDED_DIR / "targets" / "tiny-qwen2"  # ~3.1M-parameter Qwen2ForCausalLM
