"""Training throughput and pipeline overhead, measured side by side in one process.

    python -m tests.bench.bench_train_step [hydra overrides...]

Times, interleaved over the same micro-batches: (a) the frozen target's forward alone, (b) the draft's
forward+backward alone on precomputed features, (c) one full training micro-step through the stage and the
DeepSpeed engine (target forward + draft forward/backward + optimizer step). Prints tokens/s of (c) and the
ratio c / (a + b): how much the pipeline itself adds on top of the two unavoidable computations.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from data.paths import CONF_DIR, register_resolvers  # noqa: E402
from train.config import to_typed  # noqa: E402
from train.trainer import Trainer  # noqa: E402


def main(overrides: list[str], repeats: int = 12) -> None:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(
            compose(
                "train",
                overrides=["logger=none", "output_dir=outputs/bench", "train.progress=false", *overrides],
            )
        )
    cfg.resume = True  # reuse the bench directory without complaint; nothing is saved
    trainer = Trainer(cfg)
    stage, engine, target = trainer.stage, trainer.engine, trainer.target
    draft_dtype = next(engine.parameters()).dtype
    t_target, t_draft, t_step = [], [], []
    for i in range(repeats + 2):
        batch = stage.train_batch(i)
        ids = batch["input_ids"].long()

        t = time.perf_counter()
        feats = target.features(ids)
        t_a = time.perf_counter() - t

        emb = target.embed(ids[:, 1:]).to(draft_dtype)
        f_in = feats.hidden[:, :-1].to(draft_dtype)
        t = time.perf_counter()
        out = engine.module(emb, f_in)
        loss = target.lm_head(out.to(target.dtype)).float().logsumexp(-1).mean() + out.float().pow(2).mean()
        loss.backward()
        t_b = time.perf_counter() - t
        engine.module.zero_grad(set_to_none=True)

        t = time.perf_counter()
        res = stage.forward_loss(engine, batch)
        engine.backward(res.loss)
        engine.step()
        t_c = time.perf_counter() - t
        if i >= 2:  # the first iterations warm allocators and kernels
            t_target.append(t_a)
            t_draft.append(t_b)
            t_step.append(t_c)
    a, b, c = (statistics.median(x) for x in (t_target, t_draft, t_step))
    tokens = int(batch["input_ids"].numel())
    print(
        f"micro-batch: {cfg.train.micro_batch_size} x {cfg.data.seq_len} tokens, target {cfg.target.family}, "
        f"draft {cfg.draft.name}, ZeRO-{engine.zero_stage}, threads {torch.get_num_threads()}"
    )
    print(f"{'part':<34}{'median ms':>12}{'tokens/s':>12}")
    for name, v in (("target forward", a), ("draft forward+backward", b), ("full training step", c)):
        print(f"{name:<34}{v * 1e3:>12.1f}{tokens / v:>12.0f}")
    print(f"overhead ratio  step / (target fwd + draft fwd+bwd) = {c / (a + b):.3f}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # every other argument is a Hydra override of the run config
        print(__doc__)
        raise SystemExit(0)
    main(sys.argv[1:])
