"""A DFlash head trained briefly against a real target, for tests that need drafts accepted at a real rate:
the real objective on the shipped Python-docs corpus, a plain torch loop (the DeepSpeed loop is tested by
the training tests), seeded, so every call with the same arguments makes the same head."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from tests.fixed_rows import pydocs_rows
from train.drafts.dflash.build import build_head
from train.drafts.dflash.config import DFlashConfig
from train.drafts.dflash.head import DFlashHead
from train.drafts.dflash.objective import DFlashObjective
from train.modeling.target import FrozenTarget, TargetFeatures
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
    layers = tuple(head.config.feature_layers)
    tok = target.tokenizer
    rows = pydocs_rows(tok, seq_len, n_rows)
    # The target is frozen: its features for the fixed rows are computed once (the expensive part here).
    feats = [target.features(r, layers=layers) for r in rows.split(batch)]
    fused, logits = torch.cat([f.layers for f in feats]), torch.cat([f.logits for f in feats])
    run = SimpleNamespace(
        stage=StageConfig(), draft=DFlashConfig(block_size=block_size, max_anchors=max_anchors)
    )
    obj = DFlashObjective(run)
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t0, last = time.perf_counter(), {}
    for step in range(steps):
        pick = torch.randint(len(rows), (batch,), generator=gen)
        x, f = rows[pick], TargetFeatures(hidden=logits[pick], logits=logits[pick], layers=fused[pick])
        out = obj(head, target, x, f, torch.ones_like(x), training=True)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if step >= steps - 10:
            for k, v in out.stats.items():
                last[k] = last.get(k, 0.0) + float(v)
    info = {k[:-4]: last[k] / max(last["count"], 1.0) for k in ("top1_agreement_sum", "accept_len_sum")}
    info["train_s"] = time.perf_counter() - t0
    return head.eval(), info
