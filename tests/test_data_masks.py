"""Golden assistant-only loss masks for the published Llama-2-chat, Llama-3 and Qwen2.5 templates and the shipped
tokenizer (which the tiny targets use).

Each family's tokenizer is the shipped byte-level BPE plus that family's special tokens and its template
(tests/fixtures/chat_templates), saved to disk and loaded back. The expected masked text is written by hand
from the template definitions; the run-length masks in tests/fixtures/golden_masks.json pin the tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data.chat import encode_chat
from data.formats import RecordError
from data.validate import Report, iter_examples
from tests.conftest import EMBEDDED, REPO, TINY_LLAMA, TINY_QWEN2

FIXTURES = REPO / "tests" / "fixtures"
TOKENIZER = EMBEDDED / "tokenizer"
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]
FAMILIES = {
    # name: (template file or None = the tokenizer's own, special tokens, bos, eos, masked runs)
    "llama2-chat": ("llama2-chat.jinja", ["<s>", "</s>"], "<s>", "</s>", [" Paris. </s>", " Rome. </s>"]),
    "llama3": (
        "llama3.jinja",
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
        ["Paris.<|eot_id|>", "Rome.<|eot_id|>"],
    ),
    "qwen2.5": ("qwen2.5.jinja", [], None, "<|im_end|>", ["Paris.<|im_end|>", "Rome.<|im_end|>"]),
    "shipped": (None, [], None, None, ["Paris.<|im_end|>", "Rome.<|im_end|>"]),
}


def family_tokenizer(name: str, tmp: Path):
    template, specials, bos, eos, _ = FAMILIES[name]
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    if template is None:
        return tok
    tok.add_special_tokens({"additional_special_tokens": specials} if specials else {})
    if bos:
        tok.bos_token = bos
    tok.eos_token = eos
    tok.chat_template = (FIXTURES / "chat_templates" / template).read_text()
    tok.save_pretrained(tmp / name)
    return AutoTokenizer.from_pretrained(tmp / name)


def runs(mask: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for m in mask:
        if out and out[-1][0] == m:
            out[-1][1] += 1
        else:
            out.append([m, 1])
    return out


def masked_text(tok, ids: list[int], mask: list[int]) -> list[str]:
    pieces, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            pieces.append(tok.decode(cur))
            cur = []
    if cur:
        pieces.append(tok.decode(cur))
    return pieces


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_golden_mask(name: str, tmp_path: Path) -> None:
    tok = family_tokenizer(name, tmp_path)
    ids, mask = encode_chat(tok, CHAT)
    assert tok.decode(ids) == tok.apply_chat_template(CHAT, tokenize=False)  # nothing lost or doubled
    assert masked_text(tok, ids, mask) == FAMILIES[name][4]
    golden = json.loads((FIXTURES / "golden_masks.json").read_text())
    assert runs(mask) == golden[name]


@pytest.mark.parametrize("target", [TINY_LLAMA, TINY_QWEN2])
def test_tiny_targets_agree_with_generation_markers(target: Path) -> None:
    """The shipped template marks assistant turns with {% generation %}: HF's mask must equal ours."""
    tok = AutoTokenizer.from_pretrained(target)
    convs = [
        CHAT,
        CHAT[1:3],
        [{"role": "user", "content": "  hi"}, {"role": "assistant", "content": "  yo \n"}],
    ]
    for conv in convs:
        hf = tok.apply_chat_template(conv, return_assistant_tokens_mask=True, return_dict=True)
        assert encode_chat(tok, conv) == (hf["input_ids"], hf["assistant_masks"])


def test_llama2_template_refusal_is_a_record_error(tmp_path: Path) -> None:
    tok = family_tokenizer("llama2-chat", tmp_path)
    with pytest.raises(RecordError, match="alternate"):
        encode_chat(tok, [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}])


def test_template_without_assistant_text_gives_empty_mask_error(tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    tok.chat_template = (
        "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    )
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps({"messages": CHAT[1:3]}) + "\n")
    report = Report()
    from data.sources import SourceSpec

    assert list(iter_examples(SourceSpec(files=[str(f)]), tok, "auto", 64, None, report)) == []
    assert [i.reason for i in report.issues] == [
        "loss mask is empty: the template rendered no assistant tokens"
    ]
