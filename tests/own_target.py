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


# --- issue 22: a target with its own 3,000-token byte-level BPE that AutoTokenizer gives a default unk -------

BPE_ROWS = 3000
BPE_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def build_bpe_target(out: Path, text_lines: int = 4000) -> Path:
    """Qwen2 weights (the shipped tiny-qwen2's, cut to 3,000 embedding rows) with a 3,000-token byte-level BPE
    trained on the shipped corpus, a Llama-3-style chat template, and bos/eos/pad set but no unk, saved by
    transformers. Loading it, AutoTokenizer (Qwen2Tokenizer for a qwen2 config) adds its default unk
    `<|endoftext|>` as id 3,000, one past the embedding; a byte-level BPE can never emit it."""
    import gzip

    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.conftest import PYDOCS_TRAIN

    with gzip.open(PYDOCS_TRAIN, "rt") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(text_lines), f, strict=False)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_ROWS, special_tokens=BPE_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    tok.train_from_iterator(texts, trainer)
    assert tok.get_vocab_size() == BPE_ROWS, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|end_of_text|>", chat_template=LLAMA3_TEMPLATE)  # fmt: skip
    fast.save_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(TINY_QWEN2, dtype="float32")
    model.resize_token_embeddings(BPE_ROWS, mean_resizing=False)
    ids = {name: fast.convert_tokens_to_ids(t) for name, t in
           (("bos", "<|begin_of_text|>"), ("eos", "<|eot_id|>"), ("pad", "<|end_of_text|>"))}  # fmt: skip
    model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id = (
        ids["bos"],
        ids["eos"],
        ids["pad"],
    )
    model.generation_config.bos_token_id = ids["bos"]
    model.generation_config.eos_token_id = [ids["eos"], ids["pad"]]
    model.generation_config.pad_token_id = ids["pad"]
    model.save_pretrained(out)
    return out
