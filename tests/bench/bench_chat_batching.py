"""Chat batching: real (unpadded) training tokens/s with full padded rows, trimmed rows, and trimmed rows grouped
by length, measured interleaved on the same micro-batch indices in one process.

    python tests/bench/bench_chat_batching.py [--steps 12] [hydra overrides...]

Each variant runs the same SFT training micro-step (target forward, draft forward/backward, optimizer step)
on the shipped dialogues (512-token rows, one conversation each). Only the batch shape differs: (a) rows as
stored, (b) each micro-batch cut to its longest row, (c) cut and grouped by length (the default). All three
train on the same loss-masked tokens per step on average; the ratio of their real tokens/s is the saving.
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

from data.packing import BlockSampler, trim_batch  # noqa: E402
from data.paths import CONF_DIR, register_resolvers  # noqa: E402
from train.config import to_typed  # noqa: E402
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
    stage, engine = trainer.stage, trainer.engine
    mbs, lengths = cfg.train.micro_batch_size, stage.lengths
    samplers = {
        "padded rows": (BlockSampler(len(lengths), mbs, 0, 1, 0, lengths, False), False),
        "trimmed": (BlockSampler(len(lengths), mbs, 0, 1, 0, lengths, False), True),
        "trimmed + grouped": (BlockSampler(len(lengths), mbs, 0, 1, 0, lengths, True), True),
    }
    seconds = dict.fromkeys(samplers, 0.0)
    tokens = dict.fromkeys(samplers, 0)
    positions = dict.fromkeys(samplers, 0)
    for i in range(args.steps + 1):
        for name, (sampler, trim) in samplers.items():
            rows = sampler.indices(i)
            batch = stage.data.get("train", torch.from_numpy(rows))
            if trim:
                batch = trim_batch(batch, int(lengths[rows].max()))
            t = time.perf_counter()
            out = stage.forward_loss(engine, batch)
            engine.backward(out.loss)
            engine.step()
            if i > 0:  # the first round warms allocators
                seconds[name] += time.perf_counter() - t
                tokens[name] += int(lengths[rows].sum())
                positions[name] += int(batch["input_ids"].numel())
    print(
        f"SFT micro-batches of {mbs} dialogues, draft {cfg.draft.name}, {args.steps} steps each, interleaved"
    )
    print(f"{'batching':<20}{'padded share':>14}{'real tokens/s':>15}{'vs padded':>11}")
    base = tokens["padded rows"] / seconds["padded rows"]
    for name in samplers:
        rate = tokens[name] / seconds[name]
        share = 1 - tokens[name] / positions[name]
        print(f"{name:<20}{share:>14.1%}{rate:>15.0f}{rate / base:>10.2f}x")
    print(
        f"(dataset: {len(lengths)} conversations, mean {np.mean(lengths):.0f} tokens, rows of {cfg.data.seq_len})"
    )


if __name__ == "__main__":
    main()
