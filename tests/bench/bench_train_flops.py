"""How far a training step is from its matrix-multiply floor: the ceiling on any speed-up at the same math.

    python -m tests.bench.bench_train_flops [--modes online,offline] [--batches 12] [--repeats 3]

The setting is tests/bench/bench_vs_speculators.py's (EAGLE-3 on the shipped dialogues, tiny-llama target,
target layers 1, 2, 3, one draft layer, a 2048-token draft vocabulary, TTT 3, micro-batch 8, fp32), in one
process on one thread as each rank runs. Each micro-batch goes through the real `forward_loss` + backward
(the Trainer's loss seam, no DeepSpeed: the optimizer and the gradient exchange are outside, and
bench_train_breakdown puts them at 0.5 % and 3-4 % of a step).

Per mode it prints:
- ms per micro-batch (median of --repeats passes over the same --batches micro-batches);
- the matmul floor: every matrix multiply and attention call the step made (recorded by shape with a torch
  dispatch mode), replayed alone on random data of the same shapes and dtypes, timed the same way; the step's
  time over the floor is the most that any fusion, compilation or overhead cut can gain without doing less
  arithmetic;
- the arithmetic that could still be left out: the share of computed positions that are padding, and the share
  of the step's matmul FLOPs spent in the draft's LM head (and loss) at positions outside the loss mask.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.bench.bench_vs_speculators import TTT, build_inputs, head_overrides

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "outputs" / "bench-train-flops"
aten = torch.ops.aten
MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default}
ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu.default,
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
}


def _spec(a: Any) -> tuple[Any, ...]:
    if isinstance(a, torch.Tensor):
        return ("t", tuple(a.shape), a.dtype, a.stride())
    return ("v", a)


def _make(spec: tuple[Any, ...]) -> Any:
    """A tensor of the recorded shape, dtype and strides: random floats, all-true masks, zero integers."""
    if spec[0] == "v":
        return spec[1]
    _, shape, dtype, stride = spec
    # Filled as a flat storage, then viewed with the recorded strides (expanded tensors have stride 0).
    size = 1 + sum((n - 1) * st for n, st in zip(shape, stride, strict=True)) if all(shape) else 0
    flat = torch.empty(size, dtype=dtype)
    if dtype.is_floating_point:
        flat.normal_()
    else:
        flat.fill_(True) if dtype == torch.bool else flat.zero_()
    return flat.as_strided(shape, stride)


class Recorder(TorchDispatchMode):
    """Records each matmul / attention call as (op, argument specs, keyword specs) for replay."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[Any, ...]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in MATMULS or func in ATTENTION:
            kw = tuple(sorted((k, _spec(v)) for k, v in kwargs.items()))
            self.calls[(func, tuple(_spec(a) for a in args), kw)] += 1
        return func(*args, **kwargs)


def replay(calls: Counter[tuple[Any, ...]], repeats: int) -> float:
    """Seconds for one pass of every recorded call on made-up inputs of the recorded shapes (median)."""
    prepared = [
        (func, [_make(s) for s in sig], {k: _make(s) for k, s in kw}, n)
        for (func, sig, kw), n in calls.items()
    ]
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        for func, args, kw, n in prepared:
            for _ in range(n):
                func(*args, **kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def overrides(mode: str) -> list[str]:
    over = [*head_overrides(WORK), "deepspeed=none", f"output_dir={WORK / ('run-' + mode)}"]
    if mode == "offline":
        over += ["data.mode=offline", f"data.cache_dir={WORK / 'cache'}"]
    return over


def measure(mode: str, batches: int, repeats: int) -> dict[str, float]:
    from hydra import compose, initialize_config_dir
    from torch.utils.flop_counter import FlopCounterMode

    from data.packing import real_lengths
    from data.paths import CONF_DIR, register_resolvers
    from train.config import to_typed
    from train.trainer import Trainer

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=overrides(mode)))
    trainer = Trainer(cfg)
    seam, module = trainer.seam, trainer.engine.module
    micro = [seam.train_batch(i) for i in range(batches)]

    def step(b: Any) -> None:
        seam.forward_loss(module, b).loss.backward()
        module.zero_grad(set_to_none=True)

    for b in micro[:2]:
        step(b)  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for b in micro:
            step(b)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    rec = Recorder()
    with rec:
        for b in micro:
            step(b)
    floor_s = replay(rec.calls, repeats)
    counter = FlopCounterMode(display=False)
    with counter:
        for b in micro:
            step(b)
    flops = counter.get_total_flops()
    # Positions: what the micro-batches compute (rows x trimmed length) against the real tokens (each row up
    # to its last trained token, as tokens_seen counts) and the positions inside the loss mask (the only ones
    # whose draft logits reach the loss).
    positions = sum(int(b["input_ids"].numel()) for b in micro)
    real = sum(int(real_lengths(b["loss_mask"]).sum()) for b in micro)  # as tokens_seen counts them
    in_loss = sum(int(b["loss_mask"].sum()) for b in micro)
    head = getattr(module, "lm_head", None)
    head_flops_per_position = 0 if head is None else 2 * head.in_features * head.out_features * 3 * TTT
    return {
        "ms": step_s / batches * 1e3,
        "floor_ms": floor_s / batches * 1e3,
        "gflop": flops / batches / 1e9,
        "gflops_per_s": flops / step_s / 1e9,
        "padding": 1 - real / positions,
        "outside_loss_head_share": head_flops_per_position * (positions - in_loss) / flops,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="online,offline")
    p.add_argument("--batches", type=int, default=12, help="micro-batches per timed pass")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    build_inputs(WORK, None)
    torch.set_num_threads(1)
    rows = {m: measure(m, args.batches, args.repeats) for m in args.modes.split(",")}
    print(
        f"\nEAGLE-3, bench_vs_speculators' setting, 1 thread, {args.batches} micro-batches x {args.repeats}"
    )
    print(f"{'mode':<8} {'ms/step':>8} {'floor ms':>9} {'step/floor':>10} {'GFLOP':>7} {'GFLOP/s':>8} "
          f"{'padding':>8} {'head off-loss':>13}")  # fmt: skip
    for m, r in rows.items():
        print(
            f"{m:<8} {r['ms']:8.1f} {r['floor_ms']:9.1f} {r['ms'] / r['floor_ms']:10.2f} {r['gflop']:7.2f} "
            f"{r['gflops_per_s']:8.1f} {r['padding']:8.1%} {r['outside_loss_head_share']:13.1%}"
        )
    print(
        "step/floor: the most a cut outside the matrix multiplies and attention can gain; padding and head "
        "off-loss: shares of the arithmetic that leaving positions out could save."
    )


if __name__ == "__main__":
    main()
