"""A DFlash head trained briefly against a real target, for tests that need drafts accepted at a real rate:
the real objective on the shipped Python-docs corpus, a plain torch loop (the DeepSpeed loop is tested by
the training tests), seeded, so every call with the same arguments makes the same head."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from tests.fixed_rows import fit_on_rows, pydocs_rows
from train.drafts.dflash.build import build_head
from train.drafts.dflash.config import DFlashConfig
from train.drafts.dflash.head import DFlashHead
from train.drafts.dflash.objective import DFlashObjective
from train.modeling.target import FrozenTarget
from train.settings import StageConfig


def train_head(
    target: FrozenTarget,
    steps: int = 60,
    block_size: int = 4,
    num_layers: int = 1,
    seq_len: int = 64,
    batch: int = 4,
    seed: int = 0,
    n_rows: int = 64,
    lr: float = 3e-3,
    max_anchors: int = 16,
) -> tuple[DFlashHead, dict]:
    torch.manual_seed(seed)
    head = build_head(target, num_layers=num_layers, block_size=block_size)
    rows = pydocs_rows(target.tokenizer, seq_len, n_rows)
    run = SimpleNamespace(
        stage=StageConfig(), draft=DFlashConfig(block_size=block_size, max_anchors=max_anchors)
    )
    last, seconds = fit_on_rows(head, DFlashObjective(run), target, rows, steps, batch, lr, seed)
    info = {k[:-4]: last[k] / max(last["count"], 1.0) for k in ("top1_agreement_sum", "accept_len_sum")}
    info["train_s"] = seconds
    return head.eval(), info
