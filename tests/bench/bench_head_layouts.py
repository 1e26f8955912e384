"""EAGLE-3/Scylla head layouts side by side: the same pretraining run in each layout, then the same evals.

    python -m tests.bench.bench_head_layouts [--tokens 50000] [--depth 2] [--out outputs/bench-layouts]
        [--variant NAME=OVERRIDE,OVERRIDE ...] [--only NAME,NAME]

`--variant eagle3-lr4e-3=draft.layout=eagle3,optim.lr=4e-3` adds a row (its own folder under --out, named NAME;
a built-in name replaces that layout's overrides); `--only` runs and prints just those rows, in that order.
Overrides are `python -m train` keys, split at commas outside brackets (`draft.feature_layers=[1,2,3]` is one).

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
import re
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


def split_overrides(text: str) -> list[str]:
    """Split one --variant's overrides at commas; commas inside brackets belong to a value (b=[1,2])."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return [o.strip() for o in [*items, cur] if o.strip()]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME=override,override -> (NAME, overrides); NAME names the output folder, so it stays path-safe."""
    name, sep, rest = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or not split_overrides(rest):
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=override[,override...]")
    return name, split_overrides(rest)


def select_rows(variants: list[tuple[str, list[str]]], only: str | None) -> dict[str, tuple[str, list[str]]]:
    """The built-in layouts plus (or replaced by) --variant rows, cut down to --only's names in its order."""
    rows = dict(LAYOUTS)
    for name, extra in variants:
        rows[name] = (name, extra)  # a replaced built-in loses its label: its overrides changed
    if only is None:
        return rows
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in rows]
    if unknown:
        raise SystemExit(f"--only: unknown rows {unknown}; known: {sorted(rows)}")
    return {n: rows[n] for n in names}


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000, help="pretraining target tokens per layout")
    ap.add_argument("--depth", type=int, default=2, help="draft.num_layers")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench-layouts")
    ap.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="NAME=OVERRIDES",
                    help="an extra row: `python -m train` overrides, comma-separated (repeatable)")  # fmt: skip
    ap.add_argument("--only", metavar="NAMES", help="comma-separated rows to run and print (default: all)")
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = args.out.resolve()
    rows = select_rows(args.variant, args.only)
    for folder, (_, extra) in rows.items():  # one sweep folder per row: one record each
        run_point(f"layouts-{folder}", args.tokens, args.depth, extra, out / folder)
    width = max(32, *(len(label) for label, _ in rows.values()))
    print(f"\nlayouts at {args.tokens:,} pretraining tokens, depth {args.depth} (tau counts the bonus token)")
    print(f"{'layout':{width}s} {'params':>9s} {'top1 s0/s1/s2 (train)':>22s} {'tau T0 tree':>11s} {'T0 chain':>8s} "
          f"{'T1 chain':>8s} {'train s':>7s}")  # fmt: skip
    for folder, (label, _) in rows.items():
        rec = json.loads((out / folder / "results.jsonl").read_text().splitlines()[-1])
        m = last_metrics(out / folder / "train" / rec["train_key"])
        top1 = "/".join(f"{m.get(f'train/step{j}/top1_agreement', float('nan')):.3f}" for j in range(3))
        res = rec["results"]
        print(
            f"{label:{width}s} {rec['trainable_params']:>9,} {top1:>22s} {res['t0/tree']['tau']:>11.3f} "
            f"{res['t0/chain']['tau']:>8.3f} {res['t1/chain']['tau']:>8.3f} {rec['train_seconds']:>7.1f}"
        )
    print("\noverrides (after conf/sweep/point.yaml's train list):")
    for folder, (_, extra) in rows.items():
        print(f"  {folder}: {' '.join(extra)}")


if __name__ == "__main__":
    main()
