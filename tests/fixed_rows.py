"""The fixed training rows that the briefly trained test heads (tests/dflash_trained.py, tests/peagle_trained.py)
learn from: the first documents of the shipped Python-docs corpus, tokenized and cut into full rows; and the
plain torch loop that fits a head on them (the DeepSpeed loop is tested by the training tests)."""

from __future__ import annotations

import gzip
import json
import time

import torch
from torch import nn

from tests.conftest import EMBEDDED
from train.modeling.target import FrozenTarget, TargetFeatures

PYDOCS = EMBEDDED / "corpus" / "pydocs_train.jsonl.gz"


def pydocs_rows(tokenizer, seq_len: int, n_rows: int) -> torch.Tensor:  # noqa: ANN001 - any HF tokenizer
    """(n_rows, seq_len) token ids: the first 60 documents (4,000 characters each at most), end to end."""
    with gzip.open(PYDOCS, "rt") as f:
        docs = [json.loads(line)["text"] for _, line in zip(range(60), f, strict=False)]
    ids = torch.tensor([i for d in docs for i in tokenizer(d[:4000], add_special_tokens=False).input_ids])
    return ids[: (len(ids) // seq_len) * seq_len].view(-1, seq_len)[:n_rows]


def fit_on_rows(
    head: nn.Module,
    objective,
    target: FrozenTarget,
    rows: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,  # noqa: ANN001 - any objective
) -> tuple[dict[str, float], float]:
    """AdamW on seeded random batches of `rows`; the target is frozen, so its features for the rows are computed
    once (the expensive part). Returns the objective's stats summed over the last 10 steps, and the seconds."""
    layers = tuple(head.config.feature_layers)
    feats = [target.features(r, layers=layers) for r in rows.split(batch)]
    fused, logits = torch.cat([f.layers for f in feats]), torch.cat([f.logits for f in feats])
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t0, last = time.perf_counter(), {}
    for step in range(steps):
        pick = torch.randint(len(rows), (batch,), generator=gen)
        x, f = rows[pick], TargetFeatures(hidden=logits[pick], logits=logits[pick], layers=fused[pick])
        out = objective(head, target, x, f, torch.ones_like(x), training=True)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if step >= steps - 10:
            for key, v in out.stats.items():
                last[key] = last.get(key, 0.0) + float(v)
    return last, time.perf_counter() - t0
