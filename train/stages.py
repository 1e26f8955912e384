"""Training stages. The trainer calls `stage.forward_loss(draft, batch)` and never asks which stage it runs.

A stage owns its data (micro-batches by index, so resume is a seek) and its loss. The frozen target lives
here, outside the DeepSpeed engine: its features are computed under no_grad for every micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from data.packing import BlockSampler, load_text_column, pack_texts
from train.config import TrainConfig
from train.modeling.target import FrozenTarget
from train.objectives import LossOutput, objective_for


class PretrainStage:
    """Packed raw text; the draft learns the target's next feature and next-token distribution online."""

    def __init__(self, cfg: TrainConfig, target: FrozenTarget, rank: int, world: int) -> None:
        self.cfg, self.target = cfg, target
        tok = target.tokenizer
        self.train_blocks = pack_texts(
            load_text_column(cfg.data.train_files, cfg.data.text_field),
            tok,
            cfg.data.seq_len,
            cfg.data.max_tokens,
        )
        self.valid_blocks = (
            pack_texts(load_text_column(cfg.data.valid_files, cfg.data.text_field), tok, cfg.data.seq_len)
            if cfg.data.valid_files
            else self.train_blocks[:0]
        )
        mbs = cfg.train.micro_batch_size
        self.sampler = BlockSampler(len(self.train_blocks), mbs, rank, world, cfg.data.shuffle_seed)
        self.rank, self.world = rank, world
        self.objective = objective_for(cfg)

    @property
    def tokens_per_micro_batch(self) -> int:
        return self.cfg.train.micro_batch_size * self.cfg.data.seq_len

    def train_batch(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.train_blocks[torch.from_numpy(self.sampler.indices(index))]}

    def valid_batches(self, limit: int) -> Iterator[dict[str, torch.Tensor]]:
        mbs = self.cfg.train.micro_batch_size
        for b in range(limit):
            start = (b * self.world + self.rank) * mbs
            if start + mbs > len(self.valid_blocks):
                return
            yield {"input_ids": self.valid_blocks[start : start + mbs]}

    def forward_loss(
        self, draft: nn.Module, batch: dict[str, torch.Tensor], training: bool = True
    ) -> LossOutput:
        ids = batch["input_ids"].to(self.target.device, torch.long)
        mask = batch.get("loss_mask", torch.ones_like(ids)).to(ids.device)
        return self.objective(draft, self.target, ids, self.target.features(ids), mask, training)


STAGES: dict[str, type] = {"pretrain": PretrainStage}
