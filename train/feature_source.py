"""The feature source: where a training batch's tokens and the target's features come from.

Online (`data.mode=online`): token blocks built in memory from the data files; the target runs on every
micro-batch. Offline (`data.mode=offline`): blocks and target layers read from a `python -m data cache`
folder; only the LM head runs. The objective sees the same `TargetFeatures` either way.

A source is opened before the target is loaded (bad data fails before a multi-GB load) and attached to the
target once the draft is built (offline: the cache is checked against the target and the layers the draft
fuses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from data import target_io
from data.blocks import build_blocks
from data.cache_reader import CacheSplit, HiddenStateCache
from data.packing import pack_chats, real_lengths
from data.spec import DataConfig, split_spec
from data.target_io import normalize_layers
from train import distributed as dist
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetConfig, TargetFeatures


class FeatureSource(Protocol):
    def attach(self, target: FrozenTarget, layers: Sequence[int]) -> None:
        """Called with the target and the hidden_states the draft fuses (its spec's `target_layers`)."""

    def num_train(self) -> int: ...

    def num_valid(self) -> int: ...

    def train_lengths(self) -> np.ndarray: ...

    def token_counts(self, vocab: int) -> np.ndarray:
        """Loss-masked training tokens per id (length `vocab`): what a reduced draft vocabulary keeps."""
        ...

    def get(self, split: str, idx: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def features(
        self,
        target: FrozenTarget,
        ids: torch.Tensor,
        batch: dict[str, torch.Tensor],
        packing: Packing | None = None,
    ) -> TargetFeatures: ...


def _count(input_ids: torch.Tensor, loss_mask: torch.Tensor, vocab: int) -> np.ndarray:
    return torch.bincount(input_ids.long()[loss_mask.bool()], minlength=vocab).numpy()


def target_features(
    target: FrozenTarget, ids: torch.Tensor, packing: Packing | None = None, layers: Sequence[int] = ()
) -> TargetFeatures:
    """The target's forward on a batch, one conversation per row or packed (attention kept per conversation)."""
    if packing is None:
        return target.features(ids, layers=layers)
    if packing.varlen:
        # transformers runs flash-attn varlen from restarting position ids only for one row: flatten the
        # batch into one (each row starts at position 0, so no conversation spans two rows).
        b, t = ids.shape
        f = target.features(
            ids.reshape(1, -1), position_ids=packing.position_ids.reshape(1, -1), layers=layers
        )
        layers = None if f.layers is None else f.layers.view(b, t, -1)
        return TargetFeatures(f.hidden.view(b, t, -1), f.logits.view(b, t, -1), layers)
    mask = packing.hf_mask(target.model.config._attn_implementation, target.dtype)
    return target.features(ids, attention_mask=mask, position_ids=packing.position_ids, layers=layers)


class OnlineSource:
    """Token blocks in memory; features come from running the target."""

    def __init__(self, data: DataConfig, tokenizer: PreTrainedTokenizerBase) -> None:
        train_spec, valid_spec = split_spec(data, "train"), split_spec(data, "valid")
        if train_spec is None:
            raise ValueError("data: no training data (data.train_files or data.hf_dataset)")
        self.train = build_blocks(train_spec, tokenizer, "train data")
        self.valid = build_blocks(valid_spec, tokenizer, "valid data") if valid_spec else None
        if data.pack_chats and self.train.report.format != "text":  # text is packed (EOS-joined) already
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            chats = len(self.train)
            for blocks in (self.train, self.valid):
                if blocks is not None:
                    blocks.input_ids, blocks.loss_mask, blocks.doc_ids = pack_chats(
                        blocks.input_ids, blocks.loss_mask, int(pad or 0)
                    )
            dist.print0(f"[data] pack_chats: {chats} conversations in {len(self.train)} rows")
        dist.print0(f"[data] train: {self.train.report.summary()}; {len(self.train)} sequences")
        self.layers: tuple[int, ...] = ()  # set by attach

    def attach(self, target: FrozenTarget, layers: Sequence[int]) -> None:
        self.layers = tuple(layers)

    def num_train(self) -> int:
        return len(self.train)

    def num_valid(self) -> int:
        return len(self.valid) if self.valid is not None else 0

    def train_lengths(self) -> np.ndarray:
        return real_lengths(self.train.loss_mask)

    def token_counts(self, vocab: int) -> np.ndarray:
        return _count(self.train.input_ids, self.train.loss_mask, vocab)

    def get(self, split: str, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.train if split == "train" else self.valid
        assert b is not None
        batch = {"input_ids": b.input_ids[idx], "loss_mask": b.loss_mask[idx]}
        if b.doc_ids is not None:
            batch["doc_ids"] = b.doc_ids[idx]
        return batch

    def features(
        self,
        target: FrozenTarget,
        ids: torch.Tensor,
        batch: dict[str, torch.Tensor],
        packing: Packing | None = None,
    ) -> TargetFeatures:
        return target_features(target, ids, packing, self.layers)


class OfflineSource:
    """Token blocks and target features from a hidden-state cache made for this target and data."""

    def __init__(self, data: DataConfig) -> None:
        if not data.cache_dir:
            raise ValueError("data.mode=offline needs data.cache_dir (made by `python -m data cache`)")
        if data.pack_chats:
            raise ValueError(
                "data.pack_chats=true is online-only for now: the hidden-state cache stores one conversation "
                "per row. Use data.mode=online, or data.pack_chats=false with the cache."
            )
        self.cache = HiddenStateCache(data.cache_dir)
        self.final = self.cache.final_layer
        self.want = {s: spec.fingerprint() for s in ("train", "valid") if (spec := split_spec(data, s))}
        train = self.cache.split("train")
        assert train is not None
        self.train: CacheSplit = train
        self.valid = self.cache.split("valid") if "valid" in self.want else None
        self.fused: list[int] = []
        self.keys = ["input_ids", "loss_mask", f"layer_{self.final}"]
        dist.print0(f"[data] offline: {len(self.train)} train sequences from cache {data.cache_dir}")

    def attach(self, target: FrozenTarget, layers: Sequence[int]) -> None:
        # Order matters for the fused layers (they are concatenated), so map each id, keep the order.
        self.fused = [normalize_layers([i], self.final)[0] for i in layers]
        self.keys = ["input_ids", "loss_mask", f"layer_{self.final}", *(f"layer_{i}" for i in self.fused)]
        self.cache.check(target.fingerprint(), self.want, [self.final, *self.fused])

    def num_train(self) -> int:
        return len(self.train)

    def num_valid(self) -> int:
        return len(self.valid) if self.valid is not None else 0

    def train_lengths(self) -> np.ndarray:
        return real_lengths(self.train.loss_masks())

    def token_counts(self, vocab: int) -> np.ndarray:
        rows = self.train.get(list(range(len(self.train))), ["input_ids", "loss_mask"])
        return _count(rows["input_ids"], rows["loss_mask"], vocab)

    def get(self, split: str, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        src = self.train if split == "train" else self.valid
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

    def features(
        self,
        target: FrozenTarget,
        ids: torch.Tensor,
        batch: dict[str, torch.Tensor],
        packing: Packing | None = None,
    ) -> TargetFeatures:
        hidden = batch["hidden"].to(target.device, target.dtype)
        with torch.no_grad():  # the LM head is all of the target that offline mode runs
            logits = target.lm_head(hidden)
        layers = batch["layers"].to(target.device, target.dtype) if "layers" in batch else None
        return TargetFeatures(hidden=hidden, logits=logits, layers=layers)


def open_source(data: DataConfig, tokenizer: PreTrainedTokenizerBase) -> FeatureSource:
    return OfflineSource(data) if data.mode == "offline" else OnlineSource(data, tokenizer)


def load_tokenizer(target: TargetConfig) -> PreTrainedTokenizerBase:
    """The target's tokenizer alone (the same files `FrozenTarget.load` reads), so the data can be built
    and checked before the target's weights are loaded."""
    return target_io.load_tokenizer(target_io.resolve_tokenizer(target.name_or_path, target.tokenizer))
