"""`python -m eval.compare`: several drafts (or whole recipes) on the same target and prompts, one table.

    python -m eval.compare eagle2=outputs/experiments/eagle2-tiny scylla=outputs/experiments/scylla-tiny \\
        [--target tiny-llama] [--temperatures 0 1] [--num-prompts 32] [--out outputs/compare] [-- eval overrides]

Each NAME=PATH is a draft export, or an experiment folder from `python -m train.pipeline` (its last stage's
export is measured and its tokens per stage are listed); NAME=PATH1,PATH2,... is one recipe trained with several
seeds, pooled. Every draft is decoded at every temperature on the same prompts by the same engine; the table
(recipe, seeds, tokens per stage, trainable parameters, tau and speed-up per temperature, each with its 95 %
interval, training and eval wall time) is printed and written to compare.csv, with a bar chart in compare.png.
Re-running resumes: an eval that --out already holds for the same config and the same export (its recorded
training metadata unchanged) is read back instead of decoded again (--fresh decodes everything).

Intervals (eval/intervals.py): one seed: the eval's own (tau: bootstrap over prompts; speed-up: over batches).
Several seeds: tau is the ratio of totals over every seed's prompts and its interval resamples seeds, then
prompts within them; speed-up is the mean over seeds with a Student-t interval (seconds are per batch, not per
prompt, so they cannot be pooled prompt by prompt).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from safetensors import safe_open

from data.paths import CONF_DIR, register_resolvers
from eval.config import EvalConfig, to_eval_config
from eval.intervals import mean_t_interval, ratio_ci
from eval.run import EvalResult, evaluate, finished_result


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


def prompt_units(records: list[dict[str, Any]], batch_size: int) -> np.ndarray:
    """[prompts, 2]: (tokens emitted, verify forwards) of each prompt decoded at batch_size (outputs.jsonl
    rows), the counts tau is the ratio of."""
    rows = [(sum(r["emitted"]), len(r["emitted"])) for r in records if r["batch_size"] == batch_size]
    return np.array(rows, dtype=float).reshape(-1, 2)


def _rounded(ci: Any) -> list[float] | None:
    return None if ci is None or not np.all(np.isfinite(ci)) else [round(float(v), 3) for v in ci]


def pooled(runs: list[EvalResult]) -> dict[str, Any]:
    """tau and speed-up with their 95 % intervals over one eval per seed of one recipe (see the module doc)."""
    if len(runs) == 1:
        m = runs[0].metrics["all"]
        return {
            "tau": m["tau"],
            "tau_ci95": m["tau_ci95"],
            "speedup": m["speedup"],
            "speedup_ci95": m["speedup_ci95"],
        }
    bs = next(iter(runs[0].by_batch_size))
    units = [prompt_units(r.records, bs) for r in runs]
    tokens, steps = np.concatenate(units)[:, 0], np.concatenate(units)[:, 1]
    seeds = [i for i, u in enumerate(units) for _ in range(len(u))]
    speedups = [r.metrics["all"]["speedup"] for r in runs]
    have = all(s is not None for s in speedups)
    return {
        "tau": float(tokens.sum() / steps.sum()),
        "tau_ci95": ratio_ci(tokens, steps, groups=seeds),
        "speedup": float(np.mean(speedups)) if have else None,
        "speedup_ci95": mean_t_interval(speedups) if have else None,
    }


def eval_config(
    target: str, export: Path, temperature: float, folder: Path, num_prompts: int, overrides: list[str]
) -> EvalConfig:
    """The config of one `python -m eval` of an export, quiet and on one CPU thread (steadier timings on a
    shared CPU); `overrides` come last, so they may change anything (mode, draft_length, engine, ...)."""
    register_resolvers()  # the target configs interpolate ${repo:...}; registering twice is a no-op
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=[
            f"target={target}", f"draft_path={export}", f"temperature={temperature}", "logger=none",
            f"output_dir={folder}", f"prompts.num_prompts={num_prompts}",
            "progress=false", "cpu_threads=1", *overrides,
        ])  # fmt: skip
    return to_eval_config(cfg)


def evaluate_export(
    target: str,
    export: Path,
    temperature: float,
    folder: Path,
    num_prompts: int,
    overrides: list[str],
    fresh: bool = False,
) -> EvalResult:
    """One `python -m eval` of an export in this process (eval_config's settings), or, unless `fresh`, the one
    `folder` already holds for the same config and the same export (eval.run.finished_result)."""
    cfg = eval_config(target, export, temperature, folder, num_prompts, overrides)
    done = None if fresh else finished_result(cfg)
    if done is not None:
        print(
            f"[compare] {folder}: reusing the finished eval of {export} (same config; --fresh decodes again)"
        )
        return done
    return evaluate(cfg)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "drafts", nargs="+", help="NAME=PATH[,PATH...] (draft export or experiment folder; several: seeds)"
    )
    p.add_argument("--target", default="tiny-llama")
    p.add_argument("--temperatures", nargs="+", type=float, default=[0.0, 1.0])
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--out", default="outputs/compare")
    p.add_argument("--overrides", nargs="*", default=[], help="extra eval overrides, e.g. mode=chain")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="decode every draft again, even where --out holds its finished eval",
    )
    args = p.parse_args()
    register_resolvers()
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for spec in args.drafts:
        name, _, raw = spec.partition("=")
        if not raw:
            raise SystemExit(f"expected NAME=PATH, got {spec!r}")
        seeds = [resolve(Path(r)) for r in raw.split(",")]
        export, tokens, train_s = seeds[0]
        row: dict[str, Any] = {"recipe": name, "seeds": len(seeds), "tokens": tokens,
                               "trainable_params": trainable_params(export)}  # fmt: skip
        row["train_s"] = "?" if train_s is None else round(train_s)
        start, reused = time.perf_counter(), 0
        for temp in args.temperatures:
            runs = []
            for i, (seed_export, _, _) in enumerate(seeds):
                # One folder per seed whatever the count, so adding seeds later reuses the first ones' evals.
                folder = out / name / f"seed{i}-t{temp:g}"
                result = evaluate_export(
                    args.target, seed_export, temp, folder, args.num_prompts, args.overrides, args.fresh
                )
                reused += result.read_back
                runs.append(result)
            m = pooled(runs)
            row[f"tau@T={temp:g}"] = round(m["tau"], 3)
            row[f"tau@T={temp:g} ci95"] = _rounded(m["tau_ci95"])
            row[f"speedup@T={temp:g}"] = None if m["speedup"] is None else round(m["speedup"], 3)
            row[f"speedup@T={temp:g} ci95"] = _rounded(m["speedup_ci95"])
        row["eval_s"] = round(time.perf_counter() - start, 1)  # decoding done by this run only
        row["evals_reused"] = f"{reused}/{len(seeds) * len(args.temperatures)}"
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
        taus = [r[f"tau@T={temp:g}"] for r in rows]
        cis = [r[f"tau@T={temp:g} ci95"] or [t, t] for r, t in zip(rows, taus, strict=True)]
        err = [
            [t - c[0] for t, c in zip(taus, cis, strict=True)],
            [c[1] - t for t, c in zip(taus, cis, strict=True)],
        ]
        bars = ax.bar(xs, taus, width, yerr=err, capsize=3, label=f"temperature {temp:g}")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(
        [j + width * (len(temperatures) - 1) / 2 for j in range(len(rows))], [r["recipe"] for r in rows]
    )
    ax.set_ylabel("tau (tokens per target forward, bonus counted; bars: 95 % interval)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=120)
    print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")


if __name__ == "__main__":
    main()
