"""A P-EAGLE head trained briefly against a real target, for tests that need drafts accepted at a real rate:
the real build (reduced draft vocabulary counted from the rows) and objective on the shipped Python-docs
corpus, a plain torch loop (the DeepSpeed loop is tested by the training tests), seeded, so every call with
the same arguments makes the same head."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from tests.fixed_rows import fit_on_rows, pydocs_rows
from train.drafts.peagle.build import build
from train.drafts.peagle.config import PEagleConfig
from train.drafts.peagle.head import PEagleHead
from train.drafts.peagle.objective import PEagleObjective
from train.drafts.spec import BuildContext
from train.modeling.target import FrozenTarget
from train.settings import StageConfig


def train_head(
    target: FrozenTarget,
    steps: int = 100,
    k: int = 3,
    seq_len: int = 64,
    batch: int = 4,
    seed: int = 0,
    n_rows: int = 64,
    lr: float = 3e-3,
    draft_vocab_size: int = 1024,
) -> tuple[PEagleHead, dict]:
    torch.manual_seed(seed)
    tok = target.tokenizer
    rows = pydocs_rows(tok, seq_len, n_rows)
    cfg = PEagleConfig(ttt_steps=k, draft_vocab_size=draft_vocab_size)
    counts = np.bincount(rows.flatten().numpy(), minlength=target.vocab_size)
    with tempfile.TemporaryDirectory() as out:
        head = build(cfg, target, BuildContext(output_dir=Path(out), token_counts=lambda: counts))
    obj = PEagleObjective(SimpleNamespace(stage=StageConfig(), draft=cfg))
    last, seconds = fit_on_rows(head, obj, target, rows, steps, batch, lr, seed)
    info = {
        f"slot{j + 1}_top1": last[f"step{j}/top1_agreement_sum"] / last[f"step{j}/count"] for j in range(k)
    }
    info["train_s"] = seconds
    return head.eval(), info
