"""`python -m eval.laws outputs/sweeps/tiny [--metric t0/tree/tau] [--boot 1000] [--min-tokens N]`: fit the
sweep's results table (`--metric t0/chain/tau` for a DFlash sweep, which has a block axis and chains only);
print the warm-up rule's break, every law's forms with R^2, leave-one-out error, 95 %
bootstrap and Student-t intervals, the joint law, the hold-out check (5 % and 10 %) and the batch-size table; write laws.json (read by `python -m eval.plan`) and
law_*.png, and log them to W&B (group sweep-<name>) unless --no-wandb."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.laws.analyze import fit_laws, summary_lines, write_plots
from eval.laws.batch import format_batch_table
from eval.laws.records import read_table

LAWS_JSON = "laws.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.laws", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path, help="a sweep's output folder (holds results.jsonl)")
    p.add_argument("--metric", default="t0/tree/tau", help="what the tokens and capacity laws fit")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--min-tokens", type=float, default=None,
                   help="override the warm-up rule (eval/laws/warmup.py): leave tokens-axis budgets below this "
                        "out of the fits instead (0: fit every budget)")  # fmt: skip
    p.add_argument("--no-wandb", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    records = read_table(args.sweep_dir)
    if not records:
        raise SystemExit(f"{args.sweep_dir}: no results.jsonl records (run the sweep first)")
    shape = args.metric.rpartition("/")[0]
    if not any(shape in r["results"] for r in records):
        shapes = sorted({k for r in records for k in r["results"]})
        print(f"error: --metric {args.metric}: no record of {args.sweep_dir} decoded {shape!r}; its records hold "
              f"{shapes} (a block drafter such as DFlash decodes chains only: --metric t0/chain/tau)",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    laws = fit_laws(records, args.metric, args.boot, args.min_tokens)
    plots = write_plots(laws, args.sweep_dir)
    laws.pop("_fits")
    (args.sweep_dir / LAWS_JSON).write_text(json.dumps(laws, indent=1) + "\n")
    print("\n".join(summary_lines(laws)))
    print(format_batch_table(laws["batch"]))
    print(f"wrote {args.sweep_dir / LAWS_JSON} and {', '.join(str(p) for p in plots.values())}")
    if not args.no_wandb:
        log_wandb(args.sweep_dir, laws, plots, records)


def log_wandb(sweep_dir: Path, laws: dict, plots: dict[str, Path], records: list[dict]) -> None:
    """One W&B run per fit: R^2 per law, the whole results table, the plots."""
    from data.tracking import LoggerConfig, make_logger
    from eval.laws.records import flatten

    cfg = LoggerConfig(run_name=f"laws-{sweep_dir.name}", group=f"sweep-{sweep_dir.name}", tags=["laws"])
    logger = make_logger(cfg, sweep_dir, {"metric": laws["metric"]}, is_main=True)
    try:
        logger.summary(
            {f"laws/{law}/r2": e["forms"][e["best"]]["r2"] for law, e in laws["laws"].items() if "best" in e}
        )
        flat = [flatten(r) for r in records]
        cols = list(dict.fromkeys(c for r in flat for c in r))
        logger.log_table("laws/results", cols, [[r.get(c) for c in cols] for r in flat])
        for key, path in plots.items():
            logger.log_image(f"laws/{key}", path)
    finally:
        logger.finish()


if __name__ == "__main__":
    main()
