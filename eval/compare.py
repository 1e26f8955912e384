"""`python -m eval.compare`: several drafts (or whole recipes) on the same target and prompts, one table.

    python -m eval.compare eagle2=outputs/experiments/eagle2-tiny scylla=outputs/experiments/scylla-tiny \\
        [--target tiny-llama] [--temperatures 0 1] [--num-prompts 32] [--out outputs/compare] [-- eval overrides]

Each NAME=PATH is a draft export, or an experiment folder from `python -m train.pipeline` (its last stage's
export is measured and its tokens per stage are listed). Every draft is decoded at every temperature on the
same prompts by the same engine; the table (recipe, tokens per stage, trainable parameters, tau and speed-up
per temperature, training and eval wall time) is printed and written to compare.csv, with a bar chart in compare.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from safetensors import safe_open

from data.paths import CONF_DIR, register_resolvers
from eval.config import to_eval_config
from eval.run import evaluate


def _meta(export: Path) -> dict[str, Any]:
    return json.loads((Path(export) / "config.json").read_text()).get("meta", {})


def resolve(path: Path) -> tuple[Path, str, float | None]:
    """(export folder, tokens per stage, training wall seconds over all stages) for an export or a pipeline
    experiment folder; seconds are None when an export predates their recording."""
    summary = path / "pipeline.json"
    if summary.is_file():
        stages = json.loads(summary.read_text())["stages"]
        metas = [_meta(s["export"]) for s in stages]
        tokens = " + ".join(f"{s['name']} {m.get('tokens_seen')}" for s, m in zip(stages, metas, strict=True))
        seconds = [m.get("train_seconds") for m in metas]
        total = None if None in seconds else float(sum(seconds))
        return Path(stages[-1]["export"]), tokens, total
    meta = _meta(path)
    return path, f"{meta.get('stage', '?')} {meta.get('tokens_seen', '?')}", meta.get("train_seconds")


def trainable_params(export: Path) -> int:
    seen: list = []
    with safe_open(str(export / "model.safetensors"), framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            # d2t is a vocabulary map, not a weight; tied weights are stored twice but counted once.
            if k != "d2t" and not any(u.shape == t.shape and u.equal(t) for u in seen):
                seen.append(t)
    return sum(t.numel() for t in seen)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("drafts", nargs="+", help="NAME=PATH (draft export or experiment folder)")
    p.add_argument("--target", default="tiny-llama")
    p.add_argument("--temperatures", nargs="+", type=float, default=[0.0, 1.0])
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--out", default="outputs/compare")
    p.add_argument("--overrides", nargs="*", default=[], help="extra eval overrides, e.g. mode=chain")
    args = p.parse_args()
    register_resolvers()
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for spec in args.drafts:
        name, _, raw = spec.partition("=")
        if not raw:
            raise SystemExit(f"expected NAME=PATH, got {spec!r}")
        export, tokens, train_s = resolve(Path(raw))
        row: dict[str, Any] = {"recipe": name, "tokens": tokens, "trainable_params": trainable_params(export)}
        row["train_s"] = "?" if train_s is None else round(train_s)
        start = time.perf_counter()
        for temp in args.temperatures:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose("eval", overrides=[
                    f"target={args.target}", f"draft_path={export}", f"temperature={temp}", "logger=none",
                    f"output_dir={out / name / f't{temp:g}'}", f"prompts.num_prompts={args.num_prompts}",
                    "progress=false", "cpu_threads=1", *args.overrides,
                ])  # fmt: skip
            metrics = evaluate(to_eval_config(cfg)).metrics["all"]
            row[f"tau@T={temp:g}"] = round(metrics["tau"], 3)
            row[f"speedup@T={temp:g}"] = round(metrics["speedup"], 3)
        row["eval_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    write(rows, out, args.temperatures)


def write(rows: list[dict[str, Any]], out: Path, temperatures: list[float]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 4))
    width = 0.8 / len(temperatures)
    for i, temp in enumerate(temperatures):
        xs = [j + i * width for j in range(len(rows))]
        bars = ax.bar(xs, [r[f"tau@T={temp:g}"] for r in rows], width, label=f"temperature {temp:g}")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(
        [j + width * (len(temperatures) - 1) / 2 for j in range(len(rows))], [r["recipe"] for r in rows]
    )
    ax.set_ylabel("tau (tokens per target forward, bonus counted)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=120)
    print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")


if __name__ == "__main__":
    main()
