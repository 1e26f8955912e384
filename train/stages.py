"""Training stages. The trainer calls `stage.forward_loss(draft, batch)` and never asks which stage it runs.

A stage owns its data (micro-batches by index, so resume is a seek) and its loss. The frozen target lives
here, outside the DeepSpeed engine: its features are computed under no_grad for every micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from data.packing import BlockSampler, load_text_column, pack_texts
from train.config import TrainConfig
from train.losses import feature_regression_sum, soft_cross_entropy_sum, top1_match_sum
from train.modeling.target import FrozenTarget


@dataclass
class LossOutput:
    loss: torch.Tensor  # what backward() sees
    # Detached sums, incl. "count"; summed over steps and ranks before dividing.
    stats: dict[str, torch.Tensor]


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
        target = self.target
        ids = batch["input_ids"].to(target.device, torch.long)
        feats = target.features(ids)
        # Draft position t reads (token t+1, target feature t) and predicts feature t+1 / token t+2.
        in_embeds = target.embed(ids[:, 1:])
        in_feats = feats.hidden[:, :-1]
        noise = self.cfg.draft.feature_noise
        if training and noise > 0:
            # EAGLE's trick: at decode time the head reads its own (imperfect) features; noise prepares it.
            in_feats = in_feats + (torch.rand_like(in_feats) * 2 - 1) * noise
        draft_dtype = next(draft.parameters()).dtype
        out = draft(in_embeds.to(draft_dtype), in_feats.to(draft_dtype))
        draft_logits = target.lm_head(out.to(target.dtype))
        mask = batch.get("loss_mask", torch.ones_like(ids))[:, 1:].to(out.device, torch.float32)
        true_feats, true_logits = feats.hidden[:, 1:], feats.logits[:, 1:]
        feat_sum = feature_regression_sum(out, true_feats, mask)
        tok_sum = soft_cross_entropy_sum(draft_logits, true_logits, mask)
        count = mask.sum()
        st = self.cfg.stage
        loss = (st.feature_weight * feat_sum + st.token_weight * tok_sum) / count.clamp(min=1)
        with torch.no_grad():
            stats = {
                "loss_sum": loss.detach() * count,
                "feature_loss_sum": feat_sum.detach(),
                "token_loss_sum": tok_sum.detach(),
                "top1_sum": top1_match_sum(draft_logits, true_logits, mask),
                "count": count,
            }
        return LossOutput(loss, stats)


STAGES: dict[str, type] = {"pretrain": PretrainStage}
