"""Which token ids can really reach the target's embedding, and the check that refuses a tokenizer only
for those (docs/targets.md, "The tokenizer check").

An id past the embedding indexes out of range mid-run, so it is refused when tokenization, the chat template
or generation can produce it: the base vocabulary, non-special added tokens (matched in text), bos/eos/pad
(written or used for padding), special tokens the chat template writes, and unk when the tokenizer's model
can emit it. A byte-level BPE never emits unk (every byte has a token), nor does a BPE without an unk token;
AutoTokenizer still gives such tokenizers a default unk (e.g. Qwen2Tokenizer's `<|endoftext|>`, appended
past the vocabulary), which is warned about, not refused.
"""

from __future__ import annotations

import json
import warnings

from torch import nn
from transformers import PreTrainedTokenizerBase


class UnreachableTokenWarning(UserWarning):
    """A token id past the embedding that nothing can produce: harmless, but the user should know."""


def _byte_level(pre_tokenizer: dict | None) -> bool:
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "ByteLevel":
        return True
    return any(_byte_level(p) for p in pre_tokenizer.get("pretokenizers", []))


def _byte_alphabet() -> set[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return set(ByteLevel.alphabet())


def unk_emittable(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Can tokenizing some text produce the unk token? Only a fast tokenizer's model can tell; a slow one is
    assumed to (the safe answer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return True
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        return True  # WordPiece, Unigram, WordLevel map unknown pieces to unk
    if not model.get("unk_token"):
        return False  # a BPE with no unk token drops what it cannot encode; it never emits an unk id
    vocab = model.get("vocab", {})
    if _byte_level(spec.get("pre_tokenizer")) and _byte_alphabet() <= vocab.keys():
        return False  # every byte of any text has a token
    if model.get("byte_fallback") and all(f"<0x{b:02X}>" in vocab for b in range(256)):
        return False
    return True


def reachable_ids(tokenizer: PreTrainedTokenizerBase) -> dict[int, str]:
    """Ids text, a chat or padding can produce, each with why. A special token that nothing writes (a spare
    `<|extra_0|>`) never reaches the embedding, nor does an unk the tokenizer's model cannot emit."""
    out: dict[int, str] = {}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    base = backend.get_vocab(with_added_tokens=False) if backend is not None else tokenizer.get_vocab()
    if base:
        top = max(base.values())
        out[top] = f"its base vocabulary (ids up to {top})"
    template = str(getattr(tokenizer, "chat_template", None) or "")
    for tid, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if not added.special:
            out[tid] = f"added token {added.content!r}"
        elif added.content in template:
            out[tid] = f"special token {added.content!r} (written by the chat template)"
    names = ["bos_token_id", "eos_token_id", "pad_token_id"] + (
        ["unk_token_id"] if unk_emittable(tokenizer) else []
    )
    for name in names:
        tid = getattr(tokenizer, name, None)
        if isinstance(tid, int):
            out[tid] = f"{name.removesuffix('_id')} {tokenizer.convert_ids_to_tokens(tid)!r}"
    return out


def never_emitted_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Special ids nothing can produce that a draft vocabulary must not keep: an unk the tokenizer's model
    cannot emit, unless it is also bos/eos/pad or written by the chat template."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if not isinstance(unk, int) or unk_emittable(tokenizer):
        return []
    return [] if unk in reachable_ids(tokenizer) else [unk]


def check_vocab(model: nn.Module, tokenizer: PreTrainedTokenizerBase, model_path: str, tok_path: str) -> None:
    """Refuse a tokenizer only when an id past the target's embedding can occur (it would index out of
    range mid-run); warn about an unk past it that the tokenizer can never emit."""
    rows = model.get_input_embeddings().weight.shape[0]
    over = {tid: why for tid, why in reachable_ids(tokenizer).items() if tid >= rows}
    if over:
        tid = max(over)
        raise ValueError(
            f"tokenizer {tok_path} can produce id {tid} ({over[tid]}) but target {model_path} has only {rows} "
            f"embedding rows (ids 0..{rows - 1}; the tokenizer has {len(tokenizer)} tokens). If it is the "
            "target's own tokenizer, its config's vocab_size is wrong; otherwise set target.tokenizer to the "
            "folder (or tokenizer.json) the target was trained with."
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if isinstance(unk, int) and unk >= rows:
        warnings.warn(
            f"tokenizer {tok_path}: unk {tokenizer.unk_token!r} is id {unk}, past target {model_path}'s {rows} "
            "embedding rows, but this tokenizer can never emit it (byte-level BPE, or a BPE without an unk "
            "token): ignored. Nothing to do unless you add it to the chat template.",
            UnreachableTokenWarning,
            stacklevel=3,
        )
