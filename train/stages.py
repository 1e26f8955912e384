"""Training stages. The trainer calls `stage.forward_loss(draft, batch)` and never asks which stage it runs.

A stage owns its data (micro-batches by index, so resume is a seek) and its loss. The frozen target lives
here, outside the DeepSpeed engine. Online (`data.mode=online`) its features are computed under no_grad for
every micro-batch; offline (`data.mode=offline`) they are read from a `python -m data cache` folder and only
the LM head runs, so the objective sees the same `TargetFeatures` either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from data.blocks import build_blocks
from data.cache_reader import CacheSplit, HiddenStateCache
from data.packing import BlockSampler, real_lengths, trim_batch
from data.spec import split_spec
from data.target_io import normalize_layers
from train import distributed as dist
from train.config import TrainConfig
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives import LossOutput, objective_for


class _Online:
    """Token blocks in memory; features come from running the target."""

    def __init__(self, cfg: TrainConfig, target: FrozenTarget) -> None:
        data = asdict(cfg.data)
        train_spec, valid_spec = split_spec(data, "train"), split_spec(data, "valid")
        if train_spec is None:
            raise ValueError("data: no training data (data.train_files or data.hf_dataset)")
        self.train = build_blocks(train_spec, target.tokenizer, "train data")
        dist.print0(f"[data] train: {self.train.report.summary()}; {len(self.train)} sequences")
        self.valid = build_blocks(valid_spec, target.tokenizer, "valid data") if valid_spec else None

    def num_train(self) -> int:
        return len(self.train)

    def num_valid(self) -> int:
        return len(self.valid) if self.valid is not None else 0

    def train_lengths(self) -> np.ndarray:
        return real_lengths(self.train.loss_mask)

    def get(self, split: str, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.train if split == "train" else self.valid
        assert b is not None
        return {"input_ids": b.input_ids[idx], "loss_mask": b.loss_mask[idx]}


class _Offline:
    """Token blocks and target features from a hidden-state cache made for this target and data."""

    def __init__(self, cfg: TrainConfig, target: FrozenTarget) -> None:
        if not cfg.data.cache_dir:
            raise ValueError("data.mode=offline needs data.cache_dir (made by `python -m data cache`)")
        cache = HiddenStateCache(cfg.data.cache_dir)
        n = cache.final_layer
        # Order matters for the fused layers (they are concatenated), so map each id, keep the order.
        self.fused = [normalize_layers([i], n)[0] for i in target.feature_layers]
        self.keys = ["input_ids", "loss_mask", f"layer_{n}", *(f"layer_{i}" for i in self.fused)]
        data = asdict(cfg.data)
        want = {s: spec.fingerprint() for s in ("train", "valid") if (spec := split_spec(data, s))}
        cache.check(target.fingerprint(), want, [n, *self.fused])
        self.final = n
        self.train = cache.split("train")
        self.valid = cache.split("valid") if "valid" in want else None
        assert self.train is not None
        dist.print0(f"[data] offline: {len(self.train)} train sequences from cache {cfg.data.cache_dir}")

    def num_train(self) -> int:
        return len(self.train)

    def num_valid(self) -> int:
        return len(self.valid) if self.valid is not None else 0

    def train_lengths(self) -> np.ndarray:
        return real_lengths(self.train.loss_masks())

    def get(self, split: str, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        src: CacheSplit | None = self.train if split == "train" else self.valid
        assert src is not None
        rows = src.get(idx.tolist(), list(dict.fromkeys(self.keys)))
        batch = {
            "input_ids": rows["input_ids"],
            "loss_mask": rows["loss_mask"],
            "hidden": rows[f"layer_{self.final}"],
        }
        if self.fused:
            batch["layers"] = torch.cat([rows[f"layer_{i}"] for i in self.fused], dim=-1)
        return batch


class PretrainStage:
    """Packed raw text (or padded chat records); the draft learns the target's features and distribution."""

    def __init__(self, cfg: TrainConfig, target: FrozenTarget, rank: int, world: int) -> None:
        self.cfg, self.target = cfg, target
        self.data = _Offline(cfg, target) if cfg.data.mode == "offline" else _Online(cfg, target)
        mbs = cfg.train.micro_batch_size
        self.lengths = self.data.train_lengths()
        if not self.lengths.any():
            raise ValueError("train data: no sequence has a token to train on (every loss mask is zero)")
        self.sampler = BlockSampler(
            self.data.num_train(),
            mbs,
            rank,
            world,
            cfg.data.shuffle_seed,
            self.lengths,
            cfg.data.group_by_length,
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

    def features(self, ids: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetFeatures:
        if "hidden" not in batch:
            return self.target.features(ids)
        t = self.target
        hidden = batch["hidden"].to(t.device, t.dtype)
        with torch.no_grad():  # the LM head is all of the target that offline mode runs
            logits = t.lm_head(hidden)
        layers = batch["layers"].to(t.device, t.dtype) if "layers" in batch else None
        return TargetFeatures(hidden=hidden, logits=logits, layers=layers)

    def forward_loss(
        self, draft: nn.Module, batch: dict[str, torch.Tensor], training: bool = True
    ) -> LossOutput:
        ids = batch["input_ids"].to(self.target.device, torch.long)
        mask = batch.get("loss_mask", torch.ones_like(ids)).to(ids.device)
        return self.objective(draft, self.target, ids, self.features(ids, batch), mask, training)


# The three stages share one implementation: what differs is their data (packed text, chats with assistant
# masks, the target's regenerated answers) and their loss settings, which come from the stage config.
STAGES: dict[str, type] = {"pretrain": PretrainStage, "sft": PretrainStage, "distill": PretrainStage}
