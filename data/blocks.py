"""Validated examples -> fixed-shape (N, seq_len) token blocks with a loss mask: what training and the cache read.

Raw text is packed: documents joined with EOS and cut into seq_len blocks (the ragged tail is dropped), every
token trained on. Chat records are one block each, right-padded with mask 0; with `data.pack_chats` they are
then packed several to a row by data/packing.py, with `doc_ids` so that attention keeps them apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from data.chat import load_chat_template
from data.sources import SourceSpec
from data.validate import Report, check_report, iter_examples


@dataclass
class Blocks:
    input_ids: torch.Tensor  # (N, seq_len) int32
    loss_mask: torch.Tensor  # (N, seq_len) uint8: 1 = trained on
    report: Report
    doc_ids: torch.Tensor | None = None  # (N, seq_len) int32: packed chats' conversation per position

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclass
class BuildSpec:
    """Everything that decides the blocks; its fingerprint ties a hidden-state cache to its data."""

    source: SourceSpec
    format: str = "auto"  # auto | text | sharegpt | messages
    seq_len: int = 256
    max_tokens: int | None = None  # token budget for this split (None = everything)
    chat_template: str | None = None  # .jinja file overriding the tokenizer's own template
    validation: str = "strict"  # strict | lenient
    max_bad_fraction: float = 0.01  # lenient: abort when more than this fraction of records is bad
    overlong: str = "truncate"  # chat records longer than seq_len: error | truncate | drop (data/chat.py)

    def fingerprint(self) -> dict[str, object]:
        """Plain, comparable description: the files' sizes stand in for their contents (hashing TBs is slow)."""
        d = asdict(self)
        d["file_sizes"] = [Path(f).stat().st_size if Path(f).is_file() else None for f in self.source.files]
        if self.chat_template and Path(self.chat_template).is_file():
            d["chat_template"] = hashlib.sha256(Path(self.chat_template).read_bytes()).hexdigest()[:16]
        return json.loads(json.dumps(d, default=str))


def build_blocks(spec: BuildSpec, tokenizer: PreTrainedTokenizerBase, what: str = "data") -> Blocks:
    """Validate, tokenize and shape one split. Raises `DataValidationError` before returning anything."""
    report = Report()
    if spec.format not in ("text", "auto") or spec.chat_template:
        load_chat_template(tokenizer, spec.chat_template)
    examples = list(
        iter_examples(
            spec.source, tokenizer, spec.format, spec.seq_len, spec.max_tokens, report, spec.overlong
        )
    )
    check_report(report, spec.validation, spec.max_bad_fraction, what)
    if report.format == "text":
        ids, mask = _pack(examples, tokenizer, spec.seq_len, spec.max_tokens)
    else:
        ids, mask = _pad(examples, tokenizer, spec.seq_len)
    if len(ids) == 0:
        raise ValueError(f"{what}: only {report.tokens} tokens, fewer than one sequence of {spec.seq_len}")
    return Blocks(torch.from_numpy(ids), torch.from_numpy(mask), report)


def _pack(examples: list, tok: PreTrainedTokenizerBase, seq_len: int, max_tokens: int | None):
    eos = tok.eos_token_id
    if eos is None:
        raise ValueError(f"tokenizer {tok.name_or_path} has no eos_token: cannot separate documents")
    flat: list[int] = []
    for ex in examples:
        flat.extend(ex.ids)
        flat.append(eos)
    if max_tokens is not None:
        flat = flat[:max_tokens]
    n = len(flat) // seq_len
    ids = np.asarray(flat[: n * seq_len], dtype=np.int32).reshape(n, seq_len)
    return ids, np.ones_like(ids, dtype=np.uint8)


def _pad(examples: list, tok: PreTrainedTokenizerBase, seq_len: int):
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise ValueError(f"tokenizer {tok.name_or_path} has neither pad_token nor eos_token to pad with")
    ids = np.full((len(examples), seq_len), pad, dtype=np.int32)
    mask = np.zeros((len(examples), seq_len), dtype=np.uint8)
    for i, ex in enumerate(examples):
        ids[i, : len(ex.ids)] = ex.ids
        mask[i, : len(ex.mask)] = ex.mask
    return ids, mask
