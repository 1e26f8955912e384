"""Sampled verification (temperature > 0): the per-node loop with a device sync per child (before,
tests/reference_verify.py) vs the batched judging of every node (after, eval/verify.py), timed interleaved in
one process on the same trees and target logits.

    python -m tests.bench.bench_verify_sampling [--reps 5] [--vocab 32000] [--device cpu|cuda]

Cases: the EAGLE-2 tree of eval's defaults (depth 5, top-k 4, 24 nodes; deterministic children) and a
sampled chain of 4 (each node with the draft's distribution q), at batch 1 and 16, temperature 1 with
top-p 0.95. Both versions decide with the same uniforms; their accepted paths are checked equal first.
Besides time, each version's torch operator calls per verification are counted ("ops"): on a GPU each is at
least one kernel launch, and the per-node loop's scalar reads (`float(p[x])`, `float(u)`) each wait for the
device, which is where the batched version saves most; on CPU both pay the same top-p sort per visited node.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from eval.verify import TreeVerifier
from tests.reference_verify import reference_sample_walk
from train.decoding.drafter import DraftTree
from train.decoding.sampling import Sampling


def eagle2_tree(batch: int, vocab: int, g: torch.Generator) -> DraftTree:
    """24 nodes, top-k 4: 4 children of the root, 4 under each of them, then 4 under the first of those."""
    parents = [-1] * 4 + [p for p in range(4) for _ in range(4)] + [4] * 4
    depth = [1] * 4 + [2] * 16 + [3] * 4
    par = torch.tensor(parents).expand(batch, -1).clone()
    # Siblings get distinct tokens (top-k of one distribution); a low range so the target often agrees.
    tokens = torch.stack([torch.randperm(64, generator=g)[:24] for _ in range(batch)])
    return DraftTree(tokens, par, torch.tensor(depth).expand(batch, -1).clone())


def sampled_chain(batch: int, vocab: int, g: torch.Generator) -> DraftTree:
    q = torch.softmax(torch.randn(batch, 4, vocab, generator=g) * 3, -1)
    tokens = torch.multinomial(q.view(-1, vocab), 1, generator=g).view(batch, 4)
    par = torch.arange(-1, 3).expand(batch, -1).clone()
    return DraftTree(tokens, par, torch.arange(1, 5).expand(batch, -1).clone(), q=q)


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


class OpCount(TorchDispatchMode):
    """Counts the torch operator calls made inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.ops += 1
        return func(*args, **(kwargs or {}))


def op_count(fn) -> int:  # noqa: ANN001
    with OpCount() as c:
        fn()
    return c.ops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(1)
    dev, g = torch.device(args.device), torch.Generator().manual_seed(0)
    verifier = TreeVerifier(Sampling(temperature=1.0, top_p=0.95))
    print(
        f"sampled verification, vocab {args.vocab}, T=1 top-p 0.95, {dev}; median of {args.reps} (CPU: process time, 1 thread)"
    )
    print(
        f"{'case':<22}{'batch':>6}{'per-node ms':>13}{'batched ms':>12}{'ratio':>8}{'ops before':>12}{'after':>7}"
    )
    for name, build in (("EAGLE-2 tree, 24 nodes", eagle2_tree), ("sampled chain of 4", sampled_chain)):
        for batch in (1, 16):
            tree = build(batch, args.vocab, g)
            if tree.q is not None:
                tree.q = tree.q.to(dev)
            tree.tokens, tree.parents = tree.tokens.to(dev), tree.parents.to(dev)
            logits = (torch.randn(batch, tree.size + 1, args.vocab, generator=g) * 3).to(dev)
            logits[..., :64] += 6  # the drafted range is likely under the target too
            u = torch.rand(batch, tree.size + 1, 4, generator=g).to(dev)
            walks, _ = verifier.sample_walks(tree, logits, u)
            ref = [reference_sample_walk(verifier, tree, logits, u, b) for b in range(batch)]
            assert [w.path for w in walks] == [r[0] for r in ref], "the two versions accepted different paths"
            ms = {"per-node": 0.0, "batched": 0.0}
            runs = {
                "per-node": lambda t=tree, x=logits, u=u, b=batch: [
                    reference_sample_walk(verifier, t, x, u, r) for r in range(b)
                ],
                "batched": lambda t=tree, x=logits, u=u: verifier.sample_walks(t, x, u),
            }
            for _ in range(2):  # interleaved rounds, so load changes hit both alike
                for key, fn in runs.items():
                    ms[key] += timed(fn, args.reps, dev) / 2
            ratio = ms["per-node"] / ms["batched"]
            ops = {key: op_count(fn) for key, fn in runs.items()}
            print(
                f"{name:<22}{batch:>6}{ms['per-node']:>13.1f}{ms['batched']:>12.1f}{ratio:>7.2f}x"
                f"{ops['per-node']:>12}{ops['batched']:>7}"
            )


if __name__ == "__main__":
    main()
