"""EAGLE-3/Scylla head layouts side by side: the same pretraining run in each layout, then the same evals.

    PYTHONPATH=. python tests/bench/bench_head_layouts.py [--tokens 50000] [--depth 2] [--out outputs/bench-layouts]

Each layout is one point of the Scylla-law sweep's machinery (`python -m eval.laws.point`, conf/sweep/point.yaml:
pretraining on the docs corpus with its own warmup + cosine schedule, then tau at T=0/1 for chain and tree on
the same prompts), run one after another in this process's machine state, so the table compares layouts at equal
data, steps and seeds. Finished points are reused (rerun to print the table again).

Why it exists: `draft.layout=eagle3` (the published EAGLE-3 layout, what vLLM and SGLang load, the default) and
`draft.layout=draftforge` (our input_proj layout, which no engine loads) do not learn at the same rate on the tiny
default; this prints by how much, so the choice of default stays a measured one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, REPO_ROOT, register_resolvers

LAYOUTS = {  # folder: (label, overrides)
    "eagle3": ("eagle3 (default, servable)", ["draft.layout=eagle3"]),
    "eagle3-nbr": (
        "eagle3 + norm_before_residual",
        ["draft.layout=eagle3", "draft.norm_before_residual=true"],
    ),
    "draftforge": ("draftforge (not servable)", ["draft.layout=draftforge"]),
}


def base_train_overrides() -> list[str]:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return list(compose("sweep/point").train)


def run_point(name: str, tokens: int, depth: int, extra: list[str], out: Path) -> None:
    train = ",".join(f"'{o}'" for o in [*base_train_overrides(), *extra])  # quoted: Hydra reads "a=b" items
    cmd = [sys.executable, "-m", "eval.laws.point", "--config-name", "sweep/point", f"name={name}", "axis=tokens",
           f"tokens={tokens}", f"depth={depth}", f"train=[{train}]", "tracking=none", f"output_root={out}"]  # fmt: skip
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def last_metrics(run_dir: Path) -> dict:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000, help="pretraining target tokens per layout")
    ap.add_argument("--depth", type=int, default=2, help="draft.num_layers")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench-layouts")
    args = ap.parse_args()
    out = args.out.resolve()
    for folder, (_, extra) in LAYOUTS.items():  # one sweep folder per layout: one record each
        run_point(f"layouts-{folder}", args.tokens, args.depth, extra, out / folder)
    print(f"\nlayouts at {args.tokens:,} pretraining tokens, depth {args.depth} (tau counts the bonus token)")
    print(f"{'layout':32s} {'params':>9s} {'top1 s0/s1/s2 (train)':>22s} {'tau T0 tree':>11s} {'T0 chain':>8s} "
          f"{'T1 chain':>8s} {'train s':>7s}")  # fmt: skip
    for folder, (label, _) in LAYOUTS.items():
        rec = json.loads((out / folder / "results.jsonl").read_text().splitlines()[-1])
        m = last_metrics(out / folder / "train" / rec["train_key"])
        top1 = "/".join(f"{m.get(f'train/step{j}/top1_agreement', float('nan')):.3f}" for j in range(3))
        res = rec["results"]
        print(
            f"{label:32s} {rec['trainable_params']:>9,} {top1:>22s} {res['t0/tree']['tau']:>11.3f} "
            f"{res['t0/chain']['tau']:>8.3f} {res['t1/chain']['tau']:>8.3f} {rec['train_seconds']:>7.1f}"
        )


if __name__ == "__main__":
    main()
