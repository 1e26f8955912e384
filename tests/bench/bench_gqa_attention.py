"""Grouped-query attention in a draft forward: the kv cache copied per query head (before) vs read in place
by sdpa (`enable_gqa`, after), timed interleaved in one process on the same module and inputs.

    python -m tests.bench.bench_gqa_attention [--reps 20] [--device cpu|cuda]

Shapes are a decoding draft layer of a Llama-3-8B-sized head (hidden 4096, 32 query heads, 8 kv heads, head
dim 128): a chain step (1 new token) and a tree level (4 new tokens under a tree mask) over caches of 512 and
2,048 positions, batch 1 and 4. "attention" times the layer's whole attention (projections included), the
part a draft forward pays; the outputs of both paths are compared before timing.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from train.modeling.draft import layers
from train.modeling.draft.layers import Attention, KVCache


def timed(fn, reps: int, device: torch.device) -> float:  # noqa: ANN001
    """Median milliseconds per call: wall time on CUDA (synchronised), this process's CPU time on CPU, which
    other jobs on shared cores inflate far less than wall time (torch runs one thread here, see main)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(clock() - t)
    return sorted(out)[len(out) // 2] * 1e3


def decode_step(
    attn: Attention, x: torch.Tensor, pos: torch.Tensor, cache: KVCache, mask: torch.Tensor | None, past: int
) -> torch.Tensor:
    out = attn(x, pos, cache, attn_mask=mask)
    cache.crop(past)  # the next call sees the same cache
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    default = layers.SDPA_GQA
    attn = Attention(4096, 32, 8, 128, 500000.0).to(dev, dtype).eval()
    print(
        f"draft attention layer, hidden 4096, 32 query / 8 kv heads, {dtype}, {dev}; median of {args.reps} (CPU: process time, 1 thread)"
    )
    print(f"{'batch':>5}{'cache':>7}{'new':>5}{'kv copied ms':>14}{'in place ms':>13}{'ratio':>8}")
    for batch, past, new in [(1, 512, 1), (1, 2048, 1), (1, 2048, 4), (4, 2048, 1), (4, 2048, 4)]:
        cache = KVCache(1)
        cache.update(0, *(torch.randn(batch, 8, past, 128, device=dev, dtype=dtype) for _ in range(2)))
        x = torch.randn(batch, new, 4096, device=dev, dtype=dtype)
        pos = torch.arange(past, past + new, device=dev).expand(batch, -1)
        tree = torch.ones(new, new, dtype=torch.bool, device=dev).tril()
        mask = torch.cat([torch.ones(new, past, dtype=torch.bool, device=dev), tree], 1)[None, None]
        mask = mask if new > 1 else None

        step = partial(decode_step, attn, x, pos, cache, mask, past)
        results, ms = {}, {False: 0.0, True: 0.0}
        for gqa in (False, True):
            layers.SDPA_GQA = gqa
            with torch.no_grad():
                results[gqa] = step()
        torch.testing.assert_close(results[True], results[False], rtol=2e-2, atol=2e-2)
        for _ in range(3):  # interleaved rounds, so load changes hit both paths alike
            for gqa in (False, True):
                layers.SDPA_GQA = gqa
                with torch.no_grad():
                    ms[gqa] += timed(step, max(1, args.reps // 3), dev) / 3
        print(f"{batch:>5}{past:>7}{new:>5}{ms[False]:>14.2f}{ms[True]:>13.2f}{ms[False] / ms[True]:>7.2f}x")
    layers.SDPA_GQA = default


if __name__ == "__main__":
    main()
