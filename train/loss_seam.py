"""The one seam the trainer calls: `seam.forward_loss(draft, batch)`, plus the batch order behind it.

What varies lives behind two named seams, never behind a stage: the objective (one per draft architecture,
from its spec in `train/drafts/`) and the feature source (online or offline, `train/feature_source.py`).
Pretrain, SFT and distill differ only in their data and their loss settings (`stage.*` in the config), so
no class here knows which one it runs; `stage.name` is a label for run names and export metadata.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from data.packing import BlockSampler, real_lengths, trim_batch
from train.config import TrainConfig
from train.drafts.registry import spec_for
from train.feature_source import FeatureSource, open_source
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget
from train.objectives import LossOutput, Objective


def objective_for(cfg: TrainConfig) -> Objective:
    return spec_for(cfg.draft.name).objective(cfg)


class LossSeam:
    """Micro-batches by index (so resume is a seek) and the loss of one micro-batch."""

    def __init__(
        self, cfg: TrainConfig, target: FrozenTarget, rank: int, world: int, data: FeatureSource | None = None
    ) -> None:
        self.cfg, self.target = cfg, target
        self.data = data if data is not None else open_source(cfg.data, target.tokenizer)
        self.data.attach(target, spec_for(cfg.draft.name).target_layers(cfg.draft, target.num_layers))
        self.lengths = self.data.train_lengths()
        if not self.lengths.any():
            raise ValueError("train data: no sequence has a token to train on (every loss mask is zero)")
        self.sampler = BlockSampler(
            self.data.num_train(),
            cfg.train.micro_batch_size,
            rank,
            world,
            cfg.data.shuffle_seed,
            self.lengths,
            cfg.data.group_by_length,
            cfg.train.grad_accum,
        )
        self.rank, self.world = rank, world
        self.objective = objective_for(cfg)

    def step_tokens(self, micro_indices: range) -> int:
        """Real target tokens (padding excluded) that every rank together reads in these micro-batches."""
        return sum(self.sampler.tokens(i) for i in micro_indices)

    def train_batch(self, index: int) -> dict[str, torch.Tensor]:
        rows = self.sampler.indices(index)
        # Padding past the micro-batch's longest row is never computed (see data/packing.py).
        return trim_batch(
            self.data.get("train", torch.from_numpy(rows)), max(int(self.lengths[rows].max()), 2)
        )

    def valid_batches(self, limit: int) -> Iterator[dict[str, torch.Tensor]]:
        mbs = self.cfg.train.micro_batch_size
        for b in range(limit):
            start = (b * self.world + self.rank) * mbs
            if start + mbs > self.data.num_valid():
                return
            batch = self.data.get("valid", torch.arange(start, start + mbs))
            yield trim_batch(batch, max(int(real_lengths(batch["loss_mask"]).max()), 2))

    def forward_loss(
        self, draft: nn.Module, batch: dict[str, torch.Tensor], training: bool = True
    ) -> LossOutput:
        ids = batch["input_ids"].to(self.target.device, torch.long)
        mask = batch.get("loss_mask", torch.ones_like(ids)).to(ids.device)
        packing = None
        if "doc_ids" in batch:  # packed chats (data.pack_chats): keep each conversation to itself
            impl = self.target.model.config._attn_implementation
            packing = Packing.of(batch["doc_ids"].to(ids.device, torch.long), impl)
        features = self.data.features(self.target, ids, batch, packing)
        return self.objective(draft, self.target, ids, features, mask, training, packing)
