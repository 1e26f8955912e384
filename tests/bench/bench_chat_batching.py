"""Chat batching: real (unpadded) training tokens/s with full padded rows, trimmed rows, trimmed rows grouped
by length, and packed rows (data.pack_chats), measured interleaved in one process.

    python -m tests.bench.bench_chat_batching [--steps 12] [hydra overrides...]

Each variant runs the same SFT training micro-step (target forward, draft forward/backward, optimizer step)
on the shipped dialogues (512-token rows). Only the batch shape differs: (a) one conversation per row as
stored, (b) each micro-batch cut to its longest row, (c) cut and grouped by length, (d) several conversations
per row, attention kept within each (block-diagonal mask, per-conversation positions), with as many rows per
micro-batch as carry about the same real tokens as (a)-(c)'s micro-batch. The ratio of real tokens/s is the
saving; "padded share" is the share of computed positions that hold no conversation token.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from hydra import compose, initialize_config_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from dataclasses import replace  # noqa: E402

from data.packing import BlockSampler, real_lengths, trim_batch  # noqa: E402
from data.paths import CONF_DIR, register_resolvers  # noqa: E402
from train.config import to_typed  # noqa: E402
from train.feature_source import OnlineSource  # noqa: E402
from train.trainer import Trainer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(
            compose(
                "train",
                overrides=[
                    "logger=none", "output_dir=outputs/bench-chat", "train.progress=false", "stage=sft",
                    "data=embedded-dialogues", "deepspeed=none", "draft=eagle", *args.overrides,
                ],
            )
        )  # fmt: skip
    cfg.resume = True  # reuse the bench directory; nothing is saved
    trainer = Trainer(cfg)
    seam, engine = trainer.seam, trainer.engine
    mbs, lengths = cfg.train.micro_batch_size, seam.lengths
    packed = OnlineSource(replace(cfg.data, pack_chats=True), trainer.target.tokenizer)
    # A packed row's real length is the sum of its conversations' (each is cut at its last trained token).
    p_lengths = real_lengths(packed.train.loss_mask)
    p_mbs = max(1, round(mbs * lengths.mean() / p_lengths.mean()))
    samplers = {
        "padded rows": (seam.data, BlockSampler(len(lengths), mbs, 0, 1, 0, lengths, False), lengths, False),
        "trimmed": (seam.data, BlockSampler(len(lengths), mbs, 0, 1, 0, lengths, False), lengths, True),
        "trimmed + grouped": (seam.data, BlockSampler(len(lengths), mbs, 0, 1, 0, lengths, True), lengths, True),
        "packed": (packed, BlockSampler(len(p_lengths), p_mbs, 0, 1, 0, p_lengths, False), p_lengths, True),
    }  # fmt: skip
    seconds = dict.fromkeys(samplers, 0.0)
    tokens = dict.fromkeys(samplers, 0)
    positions = dict.fromkeys(samplers, 0)
    for i in range(args.steps + 1):
        for name, (source, sampler, lens, trim) in samplers.items():
            rows = sampler.indices(i % sampler.per_epoch)
            batch = source.get("train", torch.from_numpy(rows))
            if trim:
                batch = trim_batch(batch, int(lens[rows].max()))
            t = time.perf_counter()
            out = seam.forward_loss(engine, batch)
            engine.backward(out.loss)
            engine.step()
            if trainer.device.type == "cuda":  # kernels run asynchronously: time them, not their launch
                torch.cuda.synchronize()
            if i > 0:  # the first round warms allocators
                seconds[name] += time.perf_counter() - t
                tokens[name] += int(lens[rows].sum())
                positions[name] += int(batch["input_ids"].numel())
    print(
        f"SFT micro-batches of {mbs} dialogues (packed: {p_mbs} rows of ~{p_lengths.mean():.0f} real tokens), "
        f"draft {cfg.draft.name}, {args.steps} steps each, interleaved"
    )
    print(f"{'batching':<20}{'padded share':>14}{'real tokens/s':>15}{'vs padded':>11}{'vs grouped':>12}")
    rate = {name: tokens[name] / seconds[name] for name in samplers}
    for name in samplers:
        share = 1 - tokens[name] / positions[name]
        print(
            f"{name:<20}{share:>14.1%}{rate[name]:>15.0f}{rate[name] / rate['padded rows']:>10.2f}x"
            f"{rate[name] / rate['trimmed + grouped']:>11.2f}x"
        )
    print(
        f"(dataset: {len(lengths)} conversations, mean {np.mean(lengths):.0f} tokens, rows of {cfg.data.seq_len};"
        f" packed: {len(p_lengths)} rows)"
    )


if __name__ == "__main__":
    main()
