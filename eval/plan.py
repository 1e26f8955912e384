"""`python -m eval.plan LAWS_JSON --tau X` | `--compute C --batch B`: answers from fitted Scylla laws.

    python -m eval.plan outputs/sweeps/tiny/laws.json --tau 3.0
        how many pretraining tokens, at each depth, reach tau 3.0 (cheapest training FLOPs first)
    python -m eval.plan outputs/sweeps/tiny/laws.json --compute 1e15 --batch 16
        which (depth, tokens, decoding shape) gives the highest throughput at batch 16 for 1e15 training FLOPs

    python -m eval.plan outputs/sweeps/tiny/laws.json --scale-to llama3.1-8b --compute 2e21 --batch 16
        the same question on a cluster sweep's grid (conf/sweep/llama3.1-8b-*.yaml): the laws carried there by
        eval.laws.planner.transfer (an assumption, printed), its draft sizes and training FLOPs per token, and
        GPU-hours as `python -m eval.laws.cost` counts them

    python -m eval.plan outputs/batch-vllm-tiny/laws.json --compute 4e13 --batch 8 --engine vllm \
        --draft <vLLM-format draft folder> --out spec.json
        also writes vLLM's speculative config whose num_speculative_tokens_per_batch_size (k per batch size)
        comes from the batch law on vLLM's measured chain costs (eval.laws.schedule)

Every prediction is printed with its 95 % bootstrap interval and, where its budget lies beyond the measured
ones (after --scale-to: every budget), marked extrapolated; a speed-up outside every measured one is warned
of. The laws and costs are those of the sweep that wrote laws.json (its target and hardware) unless --scale-to
says otherwise; see eval/laws/planner.py for the model. Without batch-axis costs, --compute ranks (depth, tokens) by tau, which exact greedy verification makes
independent of the batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from eval.laws.planner import (
    DEFAULT_MAX_EXTRAPOLATION,
    TRANSFER_LEAVES_OUT,
    Laws,
    Unreachable,
    best_for_budget,
    tau_for_compute,
    tokens_for_tau,
    transfer,
)

Hours = Callable[[float], float]  # training FLOPs -> GPU-hours


def fail(message: str) -> NoReturn:
    """Bad input or a question the laws refuse: one line on stderr, exit code 2."""
    print(f"[plan] {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("laws", type=Path, help="laws.json written by `python -m eval.laws <sweep dir>`")
    p.add_argument("--tau", type=float, help="target tau (tokens per target forward, bonus counted)")
    p.add_argument("--compute", type=float, help="training compute budget in FLOPs")
    p.add_argument("--batch", type=int, default=1, help="serving batch size (with --compute)")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8], help="draft depths to consider")
    p.add_argument("--max-extrapolation", type=float, default=DEFAULT_MAX_EXTRAPOLATION,
                   help="refuse token budgets (--tau or --compute) beyond this multiple of the largest measured "
                   "one (after --scale-to: of that grid's largest budget, the transfer's anchor)")  # fmt: skip
    p.add_argument("--scale-to", metavar="SWEEP", help="a cluster sweep's grid to carry the laws to: "
                   "llama3.1-8b | qwen2.5-7b (conf/sweep/<SWEEP>-*.yaml)")  # fmt: skip
    p.add_argument("--mfu", type=float, default=0.40, help="with --scale-to: training MFU for GPU-hours")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="with --scale-to: GPU peak bf16 TFLOP/s")
    add_engine_args(p)
    args = p.parse_args(argv)
    if (args.tau is None) == (args.compute is None):
        p.error("give exactly one of --tau or --compute")
    if args.engine and args.compute is None:
        p.error("--engine vllm needs --compute (the schedule comes from the batch axis' costs)")
    try:
        laws = Laws.from_json(json.loads(args.laws.read_text()))
    except (OSError, ValueError, KeyError) as err:
        fail(f"{args.laws}: {err}")
    hours: Hours | None = None
    if args.scale_to:
        laws, hours = _scaled(laws, args.scale_to, args.mfu, args.peak_tflops)
    try:
        if args.tau is not None:
            _print_tokens_for_tau(laws, args.tau, args.depths, args.max_extrapolation, hours)
        elif not laws.batch:
            if args.engine:
                fail(f"{args.laws}: no batch-axis costs, so no schedule: run `python -m eval.laws.batch_vllm "
                     "<export> --out DIR --laws <this file>` and plan with DIR/laws.json")  # fmt: skip
            _print_tau_for_compute(laws, args.compute, args.batch, args.depths, hours, args.max_extrapolation)
        else:
            best = _print_best_for_budget(laws, args.compute, args.batch, args.depths, args.max_extrapolation)
            if args.engine:
                from eval.laws.schedule import write_schedule

                write_schedule(laws, best, args)
    except Unreachable as err:
        fail(f"unreachable: {err}")
    except ValueError as err:
        fail(str(err))


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("serving engine (with --compute and batch-axis costs from vLLM)")
    g.add_argument("--engine", choices=["vllm"], help="also write that engine's speculative config")
    g.add_argument(
        "--draft", help="with --engine: the draft folder in the engine's layout (its config's model)"
    )
    g.add_argument("--out", type=Path, help="with --engine: where to write the config (JSON)")
    g.add_argument("--method", default="eagle3", help="with --engine: vLLM's speculative method")
    g.add_argument("--max-batch", type=int, default=256, help="with --engine: vLLM's max_num_seqs")
    g.add_argument("--parallel-drafting", action="store_true",
                   help="with --engine: the head drafts in parallel (refused with a schedule on vLLM 0.32)")  # fmt: skip


def _scaled(laws: Laws, sweep: str, mfu: float, peak_tflops: float) -> tuple[Laws, Hours]:
    """The laws carried to a cluster sweep's grid, and its GPU-hours per FLOP (both from eval.laws.cost)."""
    from functools import partial

    from hydra import initialize_config_dir

    from data.paths import CONF_DIR, register_resolvers
    from eval.laws.cost import gpu_hours, grid_of

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        grid = grid_of(sweep)
    try:
        moved = transfer(laws, grid)
    except ValueError as err:
        fail(str(err))
    print(f"laws carried to the {sweep} grid (largest tokens-axis budget {grid.max_tokens:.3g} at depth "
          f"{grid.tokens_depth} taken to have the tau the sweep measured at its own largest budget, "
          f"{laws.max_tokens_measured:.3g} tokens; same slopes; conditional on the {sweep} sweep confirming it); "
          f"nothing was measured on this grid, so every budget below is extrapolated; GPU-hours at {mfu:.0%} "
          f"MFU of {peak_tflops:g} TFLOP/s\ninterval: {TRANSFER_LEAVES_OUT}")  # fmt: skip
    return moved, partial(gpu_hours, mfu=mfu, peak_tflops=peak_tflops)


def _size(params: float) -> str:
    return f"{params / 1e9:.3g}B" if params >= 1e9 else f"{params / 1e6:.3g}M"


def _gpu_h(hours: Hours | None, flops: float) -> str:
    return "" if hours is None else f" ({hours(flops):,.0f} GPU-h)"


def _note(row: dict) -> str:
    return f"  ({row['extrapolated']})" if row["extrapolated"] else ""


def _print_tokens_for_tau(
    laws: Laws, tau: float, depths: list[int], max_extrapolation: float, hours: Hours | None
) -> None:
    rows = tokens_for_tau(laws, tau, depths, max_extrapolation)
    print(f"tau {tau:g}: pretraining tokens per depth (joint law, 95% bootstrap interval)")
    for r in rows:
        lo, hi = r["tokens_ci95"]
        print(f"  depth {r['depth']:>2} ({_size(r['params'])} params): {r['tokens']:.3g} tokens "
              f"[{lo:.3g}, {hi:.3g}], {r['train_flops']:.3g} training FLOPs{_gpu_h(hours, r['train_flops'])}"
              f"{_note(r)}")  # fmt: skip
    best = rows[0]
    print(f"cheapest: depth {best['depth']}, {best['tokens']:.3g} tokens, {best['train_flops']:.3g} FLOPs")


def _print_best_for_budget(
    laws: Laws, compute: float, batch: int, depths: list[int], max_extrapolation: float
) -> dict:
    rows = best_for_budget(laws, compute, batch, depths, max_extrapolation)
    used = rows[0]["measured_batch"]
    print(f"compute {compute:.3g} FLOPs, batch {batch} (costs measured at batch {used}); best first:")
    for r in rows[:8]:
        lo, hi = r["speedup_ci95"]
        print(f"  depth {r['depth']:>2}, {r['tokens']:.3g} tokens, {r['shape']:>9}: tau {r['tau']:.2f}, "
              f"speed-up {r['speedup']:.2f} [{lo:.2f}, {hi:.2f}], {r['tokens_per_s']:.4g} tokens/s{_note(r)}")  # fmt: skip
    warned = [r for r in rows[:8] if r["outside_measured"]]
    for r in warned:
        print(f"{r['outside_measured']} (depth {r['depth']}, {r['shape']})")
    return rows[0]


def _print_tau_for_compute(
    laws: Laws, compute: float, batch: int, depths: list[int], hours: Hours | None, max_extrapolation: float
) -> None:
    rows = tau_for_compute(laws, compute, depths, max_extrapolation)
    print(f"compute {compute:.3g} FLOPs{_gpu_h(hours, compute)}, batch {batch}: no batch-axis costs here, so "
          "depths are ranked by tau (batch-invariant under exact greedy verification); the best tree size at "
          f"batch {batch} needs that target's batch axis. Best first:")  # fmt: skip
    for r in rows:
        lo, hi = r["tau_ci95"]
        print(f"  depth {r['depth']:>2} ({_size(r['params'])} params), {r['tokens']:.3g} tokens: "
              f"tau {r['tau']:.2f} [{lo:.2f}, {hi:.2f}]{_note(r)}")  # fmt: skip


if __name__ == "__main__":
    main()
