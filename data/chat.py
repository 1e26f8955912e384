"""Chat template rendering and assistant-only loss masks, for any template.

How the mask is found: for assistant turn k we render the conversation up to turn k with the generation
prompt (the text the model is given) and up to turn k+1 without it (the text after the model answered).
The characters in between are what the model must produce: its answer plus the template's end-of-turn
marker (`<|im_end|>`, `<|eot_id|>`, `</s>`). Trailing whitespace the template adds after that marker
(ChatML's "\n") is left out, since generation stops at the marker and never predicts it. The whole
conversation is tokenized once and a token is in the loss when its character span overlaps an answer.

Why not HF's `return_assistant_tokens_mask`: it needs `{% generation %}` markers, which the official
Llama and Qwen templates do not have; prefix rendering works with every template as published. Templates
whose render of a longer conversation does not start with the render of a shorter one (some strip earlier
reasoning) are refused, because no exact mask exists for them.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from data.formats import Messages, RecordError


def load_chat_template(tokenizer: PreTrainedTokenizerBase, template: str | None) -> None:
    """Override the tokenizer's template with a .jinja file or a literal template string."""
    if template is None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"tokenizer {tokenizer.name_or_path} has no chat template: set data.chat_template to a .jinja file"
            )
        return
    path = Path(template).expanduser()
    tokenizer.chat_template = path.read_text() if path.suffix == ".jinja" or path.is_file() else template


def render(tokenizer: PreTrainedTokenizerBase, messages: Messages, add_generation_prompt: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as err:  # e.g. Llama-2's raise_exception on non-alternating roles
        raise RecordError(f"chat template refused the conversation: {err}") from None
    assert isinstance(text, str)
    return text


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, text: str
) -> list[tuple[int, int]]:
    """Character spans of the assistant answers (with end-of-turn marker) inside the rendered `text`."""
    spans = []
    for k, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:k], add_generation_prompt=True)
        upto = render(tokenizer, messages[: k + 1], add_generation_prompt=False)
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise RecordError(
                f"chat template is not prefix-stable at turn {k}: rendering more turns rewrites earlier "
                "text, so the assistant tokens cannot be located exactly"
            )
        end = len(upto)
        while end > len(prompt) and upto[end - 1].isspace():
            end -= 1
        spans.append((len(prompt), end))
    return spans


def encode_chat(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 on assistant tokens only."""
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer {tokenizer.name_or_path}: a fast tokenizer is needed for offsets")
    text = render(tokenizer, messages, add_generation_prompt=False)
    spans = assistant_spans(tokenizer, messages, text)
    # The template writes BOS itself where it wants one; adding special tokens again would double it.
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = [0] * len(ids)
    j = 0  # spans and offsets are both sorted: one merge pass
    for i, (a, b) in enumerate(offsets):
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        if j < len(spans) and a < spans[j][1] and b > spans[j][0]:
            mask[i] = 1
    return ids, mask


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> list[int]:
    """The ids the model is given to answer the last user turn (for regeneration)."""
    text = render(tokenizer, messages, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


OVERLONG = ("error", "truncate", "drop")  # data.overlong: what a chat record longer than data.seq_len does


def fit_to_length(
    ids: list[int], mask: list[int], seq_len: int, overlong: str
) -> tuple[list[int], list[int]] | None:
    """Apply the declared long-record policy; None = drop the record (the caller counts it).

    truncate keeps the first seq_len tokens, so the loss stays on the assistant tokens that survive; a record
    cut before its first answer has nothing left to train on and is dropped instead.
    """
    if len(ids) <= seq_len:
        return ids, mask
    if overlong == "error":
        raise RecordError(
            f"{len(ids)} tokens, longer than data.seq_len={seq_len} "
            "(set data.overlong=truncate or drop to keep going)"
        )
    if overlong == "drop":
        return None
    if overlong != "truncate":
        raise ValueError(f"data.overlong={overlong!r}: expected one of {OVERLONG}")
    ids, mask = ids[:seq_len], mask[:seq_len]
    return (ids, mask) if any(mask) else None
