"""Train the shipped byte-level BPE tokenizer (Qwen-style specials and ChatML template) and check its mask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 4096  # including the three specials
MODEL_MAX_LENGTH = 1024
EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIALS = [EOS, IM_START, IM_END]  # ids 0, 1, 2

# Qwen2.5's ChatML without its default system prompt and tool calling. The `generation` block marks the
# assistant content and its <|im_end|> (what a model must learn to produce), so that
# `apply_chat_template(..., return_assistant_tokens_mask=True)` yields the SFT loss mask. The "\n" after
# <|im_end|> is outside the block: the model stops at <|im_end|> and never has to generate it.
CHAT_TEMPLATE = "\n".join(
    [
        # Every tag opens with `-`, which eats the newline before it: these line breaks render to nothing.
        "{%- for message in messages %}",
        "{%- if message['role'] == 'assistant' %}",
        "{{- '<|im_start|>assistant\\n' }}",
        "{%- generation %}",
        "{{- message['content'] + '<|im_end|>' }}",
        "{%- endgeneration %}",
        "{{- '\\n' }}",
        "{%- else %}",
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}",
        "{%- endif %}",
        "{%- endfor %}",
        "{%- if add_generation_prompt %}",
        "{{- '<|im_start|>assistant\\n' }}",
        "{%- endif %}",
    ]
)


def train_tokenizer(texts: Iterator[str] | list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE like GPT-2/Qwen: no prefix space, no unknown token, every byte representable."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=True,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,  # Qwen's choice: padding is masked anyway, no need for a separate id
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=MODEL_MAX_LENGTH,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        # Like Qwen2's tokenizer: transformers 4.x would otherwise add token_type_ids, which generate() rejects.
        model_input_names=["input_ids", "attention_mask"],
    )


def check_tokenizer(tok: PreTrainedTokenizerFast) -> None:
    """Fail the build if the saved tokenizer does not do what the data pipeline relies on."""
    assert len(tok) == VOCAB_SIZE, len(tok)
    assert tok.convert_tokens_to_ids(SPECIALS) == [0, 1, 2]
    assert tok.bos_token is None and tok.eos_token == EOS and tok.pad_token == EOS
    text = "def f(x):\n    return x ** 2  # héllo ✓\n"
    assert tok.decode(tok(text)["input_ids"]) == text, "byte-level round trip failed"
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is a list?"},
        {"role": "assistant", "content": " A mutable sequence.\n"},
    ]
    rendered = tok.apply_chat_template(chat, tokenize=False)
    expected = (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is a list?<|im_end|>\n"
        "<|im_start|>assistant\n A mutable sequence.\n<|im_end|>\n"
    )
    assert rendered == expected, rendered
    prompt = tok.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"), prompt
    enc = tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    masked = [i for i, m in zip(ids, mask, strict=True) if m]
    # Exactly the assistant contents, each followed by <|im_end|>, nothing else.
    want = tok("Hello! How can I help?<|im_end|> A mutable sequence.\n<|im_end|>")["input_ids"]
    assert masked == want, (tok.decode(masked), tok.decode(want))
    spans = tok.decode(masked)
    assert spans == "Hello! How can I help?<|im_end|> A mutable sequence.\n<|im_end|>", spans


def save_tokenizer(tok: PreTrainedTokenizerFast, out: Path) -> None:
    """save_pretrained, then spell the config the way transformers 4.x also understands.

    transformers 5 writes `"tokenizer_class": "TokenizersBackend"` and a list-valued `extra_special_tokens`;
    4.x knows neither (it expects a dict there). 5.x reads the 4.x spelling back unchanged.
    """
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["model_input_names"] = ["input_ids", "attention_mask"]
    for key in ("is_local", "local_files_only"):  # load-time kwargs that 5.x echoes back into the file
        cfg.pop(key, None)
    if isinstance(cfg.get("extra_special_tokens"), list):
        cfg["additional_special_tokens"] = cfg.pop("extra_special_tokens")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(path)
