"""One EAGLE-3 proposal at a Llama-3-sized vocabulary split: the tree search over the full target vocabulary
(before: every draft forward's reduced logits scattered into a 128,256-wide -inf tensor,
tests/reference_eagle3_drafter.py) vs over the 32,000-token draft vocabulary with only the picked ids mapped
(after: train/drafts/eagle3/drafter.py), timed interleaved in one process.

    python -m tests.bench.bench_eagle3_drafting [--reps 9] [--hidden 256] [--batch-size 1] [--device cuda]

A random 4-layer Llama target (vocabulary 128,256) and a random EAGLE-3 head over 32,000 of its ids; a small
hidden size, so the vocabulary work the change removes is a larger share than on a 4k-wide 8B target. Each
rep observes two more verified tokens and times one proposal: a tree (depth 5, top-k 4, budget 24), a greedy
chain (k = 4) and a sampled chain (k = 4, temperature 1, top-p 0.95). "search" is the proposal's time outside
the head's own calls (its forward and its 32k-row LM head, equal in both): the part this change is about, and
the part a GPU does not hide behind matmuls. CPU: process time, 1 thread; CUDA: wall time with a device
sync around every timed call (which also slows both paths alike). Median.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from train.decoding.drafter import DraftSettings
from train.decoding.sampling import Sampling

CASES = {
    "tree 5/4/24, greedy": DraftSettings(depth=5, topk=4, budget=24),
    "chain k=4, greedy": DraftSettings(mode="chain", draft_length=4),
    "chain k=4, sampled T=1 p=0.95": DraftSettings(
        mode="chain", draft_length=4, sampling=Sampling(temperature=1.0, top_p=0.95)
    ),
}


def clock(device: torch.device) -> float:
    """CPU: this process's CPU time (robust to the other jobs on a shared machine); CUDA: wall time after the
    queued kernels have finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


class ModelTime:
    """Seconds spent inside the head's forward and LM head (instance attributes wrap the bound methods)."""

    def __init__(self, head: nn.Module, device: torch.device) -> None:
        self.seconds, self.device = 0.0, device
        for name in ("forward", "logits"):
            setattr(head, name, self.timed(getattr(head, name)))

    def timed(self, fn):  # noqa: ANN001, ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t = clock(self.device)
            out = fn(*args, **kwargs)
            self.seconds += clock(self.device) - t
            return out

        return call


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--hidden", type=int, default=256, help="target and head hidden size")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--target-vocab", type=int, default=128256)
    p.add_argument("--draft-vocab", type=int, default=32000)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    dev = torch.device(args.device)
    # Imported here, so --help stays quick.
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.reference_eagle3_drafter import FullVocabEagle3Drafter
    from tests.test_eagle3_reduced_vocab import random_eagle3_head
    from train.drafts.eagle3.drafter import Eagle3Drafter
    from train.modeling.target import FrozenTarget

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=args.target_vocab,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=4,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=max(1, args.hidden // 128),
        max_position_embeddings=4096,
    )
    target = FrozenTarget(LlamaForCausalLM(cfg).to(dev), None, "random-llama3-vocab")  # no tokenizer needed
    head = random_eagle3_head(target, args.draft_vocab)
    model = ModelTime(head, dev)
    b = args.batch_size
    prompt = torch.randint(args.target_vocab, (b, 16), device=dev)
    print(f"EAGLE-3 proposal, target vocab {args.target_vocab:,} -> draft vocab {args.draft_vocab:,}, hidden "
          f"{args.hidden}, batch {b}, {dev.type}; median of {args.reps} (CPU: process time, 1 thread)")  # fmt: skip
    print(f"{'case':<31}{'proposal: before':>17}{'after':>8}{'ratio':>8}{'search: before':>16}{'after':>7}"
          f"{'ratio':>8}  same proposals")  # fmt: skip
    with torch.inference_mode():
        for case, settings in CASES.items():
            drafters = {"before": FullVocabEagle3Drafter(head, target), "after": Eagle3Drafter(head, target)}
            feats = target.features(prompt, layers=drafters["after"].feature_layers).layers
            root = torch.randint(args.target_vocab, (b,), device=dev)
            ms, search, trees = ({k: [] for k in drafters} for _ in range(3))
            for d in drafters.values():
                d.start(b)
                d.observe(prompt, feats, torch.ones_like(prompt, dtype=torch.bool))
                d.propose(root, settings, torch.Generator(dev).manual_seed(0))  # warm-up; commits the prompt
            for rep in range(args.reps + 1):
                toks = torch.randint(args.target_vocab, (b, 2), device=dev)  # two more verified tokens
                step_feats = torch.randn(b, 2, feats.shape[-1], device=dev)
                for name, d in drafters.items():
                    d.observe(toks, step_feats, torch.ones_like(toks, dtype=torch.bool))
                    model.seconds, t = 0.0, clock(dev)
                    tree = d.propose(toks[:, -1], settings, torch.Generator(dev).manual_seed(rep))
                    if rep:  # rep 0 warms the grown cache up, not counted
                        ms[name].append(1e3 * (clock(dev) - t))
                        search[name].append(ms[name][-1] - 1e3 * model.seconds)
                        trees[name].append(tree.tokens)
            med = {k: median(v) for k, v in ms.items()}
            out = {k: median(v) for k, v in search.items()}
            # Greedy proposals must be equal; sampled ones draw differently (tests/test_eagle3_reduced_vocab.py
            # checks their q instead).
            same = all(torch.equal(x, y) for x, y in zip(trees["before"], trees["after"], strict=True))
            print(f"{case:<31}{med['before']:>14.2f} ms{med['after']:>8.2f}{med['before'] / med['after']:>7.2f}x"
                  f"{out['before']:>13.2f} ms{out['after']:>7.2f}{out['before'] / out['after']:>7.2f}x"
                  f"  {same if settings.sampling.greedy else 'n/a (sampled)'}")  # fmt: skip


if __name__ == "__main__":
    main()
