"""Benchmark (not collected by pytest): what a depth-d tree's drafting costs beyond its d draft forwards,
this working tree's drafting code side by side with the same code at an older git revision.

    python -m tests.bench.bench_eval_tree_drafting --draft /path/to/hf-causal-lm --ref 24ec402

Issue 15's bar: a depth-d tree's drafting costs at most d draft forwards plus 10%. Same target, same dense
draft, same prompts, greedy, batch 1 (and --batch-size B), 1 thread; the engines decode every prompt in
turn, interleaved, so a change in the machine's load falls on all alike. Every draft model forward is timed;
"outside" is drafting time spent outside them: the tree search, masks, positions, cache trims. A draft is
trained first when --draft is not given (tests/bench/bench_eval_vs_hf_assisted.py's stand-in trainer).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import types
from pathlib import Path

import torch

from data.embedded_paths import TINY_LLAMA_DIR
from data.target_io import eos_token_ids
from eval.config import PromptsConfig
from eval.drafters import DraftSettings
from eval.engine import Engine
from eval.prompts import load_prompts
from train.drafts.dense.drafter import DenseDrafter, load_dense
from train.modeling.target import TargetConfig

REPO = Path(__file__).resolve().parents[2]


def drafter_at(ref: str) -> type:
    """DenseDrafter as it was at git revision `ref`, with that revision's tree search (train.decoding.trees);
    everything else (engine, kv, model) is this working tree's."""
    mods = {}
    for name in ("trees", "dense"):
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:eval/drafters/{name}.py"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        mod = types.ModuleType(f"{name}_at_{ref}")
        exec(compile(src, f"{ref}:eval/drafters/{name}.py", "exec"), mod.__dict__)  # noqa: S102 - our own file
        mods[name] = mod
    mods["dense"].draft_chain, mods["dense"].dynamic_tree = (
        mods["trees"].draft_chain,
        mods["trees"].dynamic_tree,
    )
    return mods["dense"].DenseDrafter


class Timed:
    """Times every draft model forward (`_run`) of a drafter."""

    def __init__(self, drafter) -> None:  # noqa: ANN001
        self.forwards, self.seconds, run = 0, 0.0, drafter._run

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            out = run(*args, **kwargs)
            self.forwards += 1
            self.seconds += time.perf_counter() - t0
            return out

        drafter._run = timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--draft", help="a HF causal-LM directory sharing the target's tokenizer; default: train one"
    )
    ap.add_argument("--ref", default="HEAD", help="the git revision to compare against")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--topk", type=int, default=4)
    ap.add_argument("--budget", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="passes over the prompts (all engines each time)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    target = TargetConfig(name_or_path=str(TINY_LLAMA_DIR), attn_implementation="sdpa").load("cpu")
    eos = eos_token_ids(target.model, target.tokenizer)
    prompts = [
        p.input_ids for p in load_prompts(PromptsConfig(num_prompts=args.prompts), target.tokenizer).prompts
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if args.draft:
            path = args.draft
        else:
            from tests.bench.bench_eval_vs_hf_assisted import train_dense

            path = str(train_dense(target, 300, 2, Path(tmp) / "dense"))
        draft = load_dense(path, target)
    tree = DraftSettings(depth=args.depth, topk=args.topk, budget=args.budget)
    one = DraftSettings(mode="chain", draft_length=1)  # exactly one draft forward a step: the unit
    engines = {f"tree {args.depth}/{args.topk}/{args.budget} @ {args.ref}": (drafter_at(args.ref), tree),
               f"tree {args.depth}/{args.topk}/{args.budget} (this tree)": (DenseDrafter, tree),
               "chain k=1 (this tree)": (DenseDrafter, one)}  # fmt: skip
    runs = {name: Engine(target, cls(draft), s, eos) for name, (cls, s) in engines.items()}
    outs = {}
    for e in runs.values():  # warm-up, not counted
        e.generate(prompts[:1], 8)
    timers = {name: Timed(e.drafter) for name, e in runs.items()}
    steps, draft_s = dict.fromkeys(runs, 0), dict.fromkeys(runs, 0.0)
    bs = args.batch_size
    for _ in range(args.rounds):
        for i in range(0, len(prompts), bs):
            for name, e in runs.items():
                g = e.generate(prompts[i : i + bs], args.max_new_tokens)
                steps[name] += g.stats.steps
                draft_s[name] += g.stats.draft_time
                outs.setdefault(name, []).extend(r.tokens for r in g.rows)
    names = list(runs)
    same = all(outs[n] == outs[names[-1]] for n in names)
    print(f"\nload average {os.getloadavg()[0]:.2f}; tiny-llama target, dense draft {path}, {len(prompts)} prompts x "
          f"{args.max_new_tokens} new tokens x {args.rounds} rounds, batch {bs}, greedy, 1 CPU thread; "
          f"outputs identical across engines: {same}")  # fmt: skip
    unit = draft_s[names[-1]] / steps[names[-1]]
    print(f"{'engine':40} {'draft ms/step':>14} {'forwards/step':>14} {'ms/forward':>11} {'outside %':>10} "
          f"{'in chain-k=1 steps':>19}")  # fmt: skip
    for name in names:
        t = timers[name]
        outside = 100 * (1 - t.seconds / draft_s[name])
        print(f"{name:40} {1e3 * draft_s[name] / steps[name]:14.2f} {t.forwards / steps[name]:14.2f} "
              f"{1e3 * t.seconds / t.forwards:11.2f} {outside:10.1f} {draft_s[name] / steps[name] / unit:19.2f}")  # fmt: skip
    print(f"bar: a depth-{args.depth} tree drafts in at most {args.depth} x 1.10 = {1.1 * args.depth:.1f} single draft "
          f"forwards, i.e. 'outside' under ~10% (issue 15)")  # fmt: skip


if __name__ == "__main__":
    main()
