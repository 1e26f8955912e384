"""The fixed training rows that the briefly trained test heads (tests/dflash_trained.py, tests/peagle_trained.py)
learn from: the first documents of the shipped Python-docs corpus, tokenized and cut into full rows."""

from __future__ import annotations

import gzip
import json

import torch

from tests.conftest import EMBEDDED

PYDOCS = EMBEDDED / "corpus" / "pydocs_train.jsonl.gz"


def pydocs_rows(tokenizer, seq_len: int, n_rows: int) -> torch.Tensor:  # noqa: ANN001 - any HF tokenizer
    """(n_rows, seq_len) token ids: the first 60 documents (4,000 characters each at most), end to end."""
    with gzip.open(PYDOCS, "rt") as f:
        docs = [json.loads(line)["text"] for _, line in zip(range(60), f, strict=False)]
    ids = torch.tensor([i for d in docs for i in tokenizer(d[:4000], add_special_tokens=False).input_ids])
    return ids[: (len(ids) // seq_len) * seq_len].view(-1, seq_len)[:n_rows]
