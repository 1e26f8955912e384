"""A target folder the repo does not ship, built at test time: what a user brings (issue 16).

The shipped tiny-qwen2's weights with an embedding of its own size (4,160 rows), its own tokenizer.json that
transformers re-interprets (tokenizer_class Qwen2Tokenizer: another pre-tokenizer and an NFC normaliser
than the file as written), a spare added special token no text or template produces, and a chat template
of its own ("role: content" turns).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tokenizers import AddedToken, Tokenizer
from transformers import AutoModelForCausalLM

from tests.conftest import TINY_QWEN2

VOCAB_ROWS = 4160
SPARE_TOKEN = "<|extra_0|>"
TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + ': ' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant: ' }}{%- endif %}"
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def build_own_target(out: Path, rows: int = VOCAB_ROWS, spare: str | None = SPARE_TOKEN) -> Path:
    model = AutoModelForCausalLM.from_pretrained(TINY_QWEN2, dtype="float32")
    model.resize_token_embeddings(rows, mean_resizing=False)
    model.generation_config.eos_token_id = [0, 2]  # <|endoftext|> and this template's <|im_end|>
    model.save_pretrained(out)
    tok = Tokenizer.from_file(str(TINY_QWEN2 / "tokenizer.json"))
    if spare:
        tok.add_special_tokens([AddedToken(spare, special=True, normalized=False)])
    tok.save(str(out / "tokenizer.json"))
    cfg = json.loads((TINY_QWEN2 / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"  # transformers 5 re-reads tokenizer.json as this class
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    (out / "chat_template.jinja").write_text(TEMPLATE)
    return out


def tokenizer_only(target: Path, out: Path) -> Path:
    """A folder holding only the target's tokenizer files (no config.json)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(target / name, out / name)
    return out
