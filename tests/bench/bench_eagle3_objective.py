"""The EAGLE-3 objective's target side per training step: the full (B, L, V) target logits shifted and reduced
to the draft vocabulary at every unrolled step (before, tests/reference_eagle3.py) vs reduced once and the
small result shifted per step (after, train/drafts/eagle3/objective.py), timed interleaved in one process.

    python -m tests.bench.bench_eagle3_objective [--reps 5] [--steps 7]

Two rows: the target-side work alone at Llama-2/3 vocabulary sizes with a 32k draft vocabulary (synthetic
logits, batch 4 x 256 positions), and the whole unrolled objective (draft forwards included) on the shipped
tiny target with its full vocabulary. CPU: process time, one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from train.drafts.eagle3.objective import _shift


def cpu_ms(fn, reps: int) -> float:  # noqa: ANN001
    out = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return sorted(out)[len(out) // 2] * 1e3


def target_side_before(logits: torch.Tensor, d2t: torch.Tensor, steps: int) -> None:
    for j in range(steps):
        full = _shift(logits, j, fill=0.0)
        full.index_select(-1, d2t), full.argmax(-1)


def target_side_after(logits: torch.Tensor, d2t: torch.Tensor, steps: int) -> None:
    reduced, top = logits.index_select(-1, d2t), logits.argmax(-1)
    for j in range(steps):
        _shift(reduced, j, fill=0.0), _shift(top, j, fill=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=7, help="TTT steps (EAGLE-3's cluster recipe uses 7)")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"EAGLE-3 objective, {args.steps} TTT steps; median of {args.reps} (CPU process time, 1 thread)")
    print(f"{'case':<44}{'before ms':>11}{'after ms':>10}{'ratio':>8}")
    for vocab in (32000, 128256):
        logits = torch.randn(4, 256, vocab)
        d2t = torch.randperm(vocab)[:32000].sort().values
        ms = {"before": 0.0, "after": 0.0}
        for _ in range(2):
            ms["before"] += (
                cpu_ms(lambda x=logits, d=d2t: target_side_before(x, d, args.steps), args.reps) / 2
            )
            ms["after"] += cpu_ms(lambda x=logits, d=d2t: target_side_after(x, d, args.steps), args.reps) / 2
        name = f"target side, vocab {vocab} -> 32000, 4 x 256"
        print(f"{name:<44}{ms['before']:>11.1f}{ms['after']:>10.1f}{ms['before'] / ms['after']:>7.2f}x")
    # The whole objective needs a target, a head and their configs: imported here, so --help stays quick.
    from tests.conftest import TINY_LLAMA
    from tests.drafts import layers
    from tests.reference_eagle3 import ReferenceEagle3Objective
    from tests.test_packed_chats import config, conversations
    from train.draft_factory import build_draft
    from train.feature_source import target_features
    from train.loss_seam import objective_for
    from train.modeling.target import FrozenTarget

    target = FrozenTarget.load(str(TINY_LLAMA))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(tmp, "draft=eagle3", f"draft.ttt_steps={args.steps}", "draft.draft_vocab_size=null")
    torch.manual_seed(0)
    head = build_draft(cfg, target).eval()
    ids, mask = conversations()
    ids = ids.long()
    with torch.no_grad():
        feats = target_features(target, ids, None, layers(cfg, target.num_layers))
        runs = {"before": ReferenceEagle3Objective(cfg), "after": objective_for(cfg)}
        ms = {"before": 0.0, "after": 0.0}
        for _ in range(2):
            for key, obj in runs.items():
                ms[key] += (
                    cpu_ms(lambda o=obj: o.per_position(head, head, target, ids, feats, mask), args.reps) / 2
                )
    name = f"whole objective, tiny-llama (vocab {target.vocab_size})"
    print(f"{name:<44}{ms['before']:>11.1f}{ms['after']:>10.1f}{ms['before'] / ms['after']:>7.2f}x")


if __name__ == "__main__":
    main()
