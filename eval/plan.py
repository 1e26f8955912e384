"""`python -m eval.plan LAWS_JSON --tau X` | `--compute C --batch B`: answers from fitted Scylla laws.

    python -m eval.plan outputs/sweeps/tiny/laws.json --tau 3.0
        how many pretraining tokens, at each depth, reach tau 3.0 (cheapest training FLOPs first)
    python -m eval.plan outputs/sweeps/tiny/laws.json --compute 1e15 --batch 16
        which (depth, tokens, decoding shape) gives the highest throughput at batch 16 for 1e15 training FLOPs

Every prediction is printed with its 95 % bootstrap interval. The laws and costs are those of the sweep that
wrote laws.json (its target and hardware); see eval/laws/planner.py for the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval.laws.planner import DEFAULT_MAX_EXTRAPOLATION, Laws, Unreachable, best_for_budget, tokens_for_tau


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("laws", type=Path, help="laws.json written by `python -m eval.laws <sweep dir>`")
    p.add_argument("--tau", type=float, help="target tau (tokens per target forward, bonus counted)")
    p.add_argument("--compute", type=float, help="training compute budget in FLOPs")
    p.add_argument("--batch", type=int, default=1, help="serving batch size (with --compute)")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8], help="draft depths to consider")
    p.add_argument("--max-extrapolation", type=float, default=DEFAULT_MAX_EXTRAPOLATION,
                   help="refuse token budgets beyond this multiple of the largest measured one")  # fmt: skip
    args = p.parse_args(argv)
    if (args.tau is None) == (args.compute is None):
        p.error("give exactly one of --tau or --compute")
    try:
        laws = Laws.from_json(json.loads(args.laws.read_text()))
    except ValueError as err:
        raise SystemExit(f"[plan] {args.laws}: {err}") from None
    if args.tau is not None:
        try:
            rows = tokens_for_tau(laws, args.tau, args.depths, args.max_extrapolation)
        except Unreachable as err:
            raise SystemExit(f"[plan] unreachable: {err}") from None
        print(f"tau {args.tau:g}: pretraining tokens per depth (joint law, 95% bootstrap interval)")
        for r in rows:
            lo, hi = r["tokens_ci95"]
            note = "  (extrapolated beyond the measured budgets)" if r["beyond_measured"] else ""
            print(f"  depth {r['depth']:>2} ({r['params'] / 1e6:.3g}M params): {r['tokens']:.3g} tokens "
                  f"[{lo:.3g}, {hi:.3g}], {r['train_flops']:.3g} training FLOPs{note}")  # fmt: skip
        best = rows[0]
        print(
            f"cheapest: depth {best['depth']}, {best['tokens']:.3g} tokens, {best['train_flops']:.3g} FLOPs"
        )
        return
    try:
        rows = best_for_budget(laws, args.compute, args.batch, args.depths)
    except ValueError as err:
        raise SystemExit(f"[plan] {err}") from None
    used = rows[0]["measured_batch"]
    print(
        f"compute {args.compute:.3g} FLOPs, batch {args.batch} (costs measured at batch {used}); best first:"
    )
    for r in rows[:8]:
        lo, hi = r["speedup_ci95"]
        note = "  (tokens beyond the measured budgets)" if r["beyond_measured"] else ""
        print(f"  depth {r['depth']:>2}, {r['tokens']:.3g} tokens, {r['shape']:>9}: tau {r['tau']:.2f}, "
              f"speed-up {r['speedup']:.2f} [{lo:.2f}, {hi:.2f}], {r['tokens_per_s']:.4g} tokens/s{note}")  # fmt: skip


if __name__ == "__main__":
    main()
