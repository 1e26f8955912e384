"""Every draft architecture trained on the same tokens against the same target, then measured the same way.

    python -m tests.bench.bench_draft_architectures [--steps 150] [--drafts eagle eagle3 scylla medusa dense]
        [--target tiny-llama] [--out outputs/arch] [-- extra train overrides]

Each draft is pretrained with 2-rank DeepSpeed (`torchrun -m train`) for the same number of steps (so the
same target tokens), exported, and evaluated by `python -m eval` (chain, k=4, temperature 0, lossless check
on). Prints one table (architecture, trainable and frozen-shared parameters, tokens, train top-1, tau,
speed-up, wall time), and writes `architectures.csv` and `architectures.png` under --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def last_metrics(run_dir: Path) -> dict:
    """The record of the last step (a resumed run may have logged earlier steps again)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(records, key=lambda r: r.get("step", 0)) if records else {}


def run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return time.perf_counter() - t


def train_draft(run_dir: Path, overrides: list[str], env: dict[str, str]) -> float:
    """Train one draft with 2-rank DeepSpeed (`torchrun -m train`) into run_dir, checkpointing and validating
    only at the end; seconds taken. A finished run (its export exists) is not trained again (0.0): rerunning
    a bench only re-evaluates."""
    if (run_dir / "export" / "config.json").is_file():
        return 0.0
    return run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train",
         f"output_dir={run_dir}", "train.save_every=1000000", "train.eval_every=0", "logger=none", "resume=true",
         "train.progress=false", *overrides],
        env,
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--drafts", nargs="+", default=["eagle", "eagle3", "scylla", "medusa", "dense"])
    p.add_argument("--target", default="tiny-llama")
    p.add_argument("--out", default="outputs/arch")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training run")
    args = p.parse_args()
    from eval.compare import trainable_params  # after parsing: --help answers without loading torch

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = REPO / args.out
    rows = []
    for draft in args.drafts:
        run_dir = out / draft
        train_s = train_draft(
            run_dir,
            [f"target={args.target}", f"draft={draft}", f"train.max_steps={args.steps}", *args.overrides],
            env,
        )
        eval_dir = run_dir / "eval"
        eval_s = run(
            [sys.executable, "-m", "eval", f"target={args.target}", f"draft_path={run_dir / 'export'}",
             f"output_dir={eval_dir}", "logger=none", "cpu_threads=1", f"prompts.num_prompts={args.prompts}"],
            env,
        )  # fmt: skip
        res = json.loads((eval_dir / "results.json").read_text())
        overall = res["metrics"]["all"] if "metrics" in res else res["all"]
        meta = json.loads((run_dir / "export" / "config.json").read_text())["meta"]
        m = last_metrics(run_dir)
        rows.append(
            {
                "draft": draft,
                "trainable_params": trainable_params(run_dir / "export"),
                "tokens_seen": meta.get("tokens_seen"),
                "train_top1": round(
                    m.get("valid/top1_agreement", m.get("train/top1_agreement", float("nan"))), 4
                ),
                "tau": round(overall["tau"], 3),
                "speedup": round(overall["speedup"], 3),
                "train_s": round(train_s, 1),
                "eval_s": round(eval_s, 1),
            }
        )
    cols = list(rows[0])
    print(" ".join(f"{c:>16}" for c in cols))
    for r in rows:
        print(" ".join(f"{r[c]!s:>16}" for c in cols))
    with open(out / "architectures.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([r["draft"] for r in rows], [r["tau"] for r in rows], color="#4C72B0")
    for i, r in enumerate(rows):
        ax.text(i, r["tau"], f"{r['tau']:.2f}\n{r['trainable_params'] / 1e6:.2f}M", ha="center", va="bottom")
    ax.set_ylabel("tau (tokens per target forward, bonus counted)")
    ax.set_title(f"Draft architectures, {rows[0]['tokens_seen']} training tokens each, target {args.target}")
    ax.set_ylim(0, max(r["tau"] for r in rows) * 1.3)
    fig.tight_layout()
    fig.savefig(out / "architectures.png", dpi=120)
    print(f"wrote {out / 'architectures.csv'} and {out / 'architectures.png'}")


if __name__ == "__main__":
    main()
