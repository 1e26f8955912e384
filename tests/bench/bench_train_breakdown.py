"""A training step split into its parts, on 2 CPU ranks as the main job runs (launch/quickstart.sh).

    python -m tests.bench.bench_train_breakdown [--drafts eagle,eagle3] [--modes online,offline]
        [--steps 30] [--warmup 5] [--tokens 200000] [--cache DIR] [--nproc 2] [--deepspeed zero2]
        [--split-wait] [--rounds 1] [--baseline CHECKOUT] [--ops] [-- hydra overrides...]

For each draft and feature source it starts `python -m torch.distributed.run --standalone --nproc_per_node 2`
on this module (`--worker`), which builds the real Trainer (tiny-llama target, deepspeed=zero2, logging as
configured, no eval or checkpoint inside the window) and runs `Trainer.fit` unchanged with its collaborators'
calls timed (tests/bench/step_phases.py says what each phase holds and why the sum is honest). Prints, per
configuration, ms per step and % of the step for: target forward, draft forward, draft backward, optimizer,
data, comm and other (= step - the sum), the mean over ranks, and the share outside the model calls
(data + comm + other). Offline reads a hidden-state cache of the same rows (built into --cache if absent).

--baseline CHECKOUT runs the same workers from another checkout's code (e.g. the main branch) alternately with
this one, --rounds times, and prints both side by side with the step-time ratio before/after. --ops prints
only each per-step cut made in the objectives, old form vs new, side by side in one process
(tests/bench/step_ops.py), with a check that both give the same bits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
MARK = "BREAKDOWN_JSON "
TARGET_DIR = "data/embedded/targets/tiny-llama"
# Named by absolute path in every run and in the cache: the cache records its source files, so a --baseline
# checkout reads the same file and the same cache as this one.
TRAIN_FILE = REPO / "data" / "embedded" / "corpus" / "pydocs_train.jsonl.gz"
LABELS = {
    "target_forward": "target forward",
    "draft_forward": "draft forward",
    "draft_backward": "draft backward",
    "optimizer": "optimizer step",
    "data": "data (batch, collate, to device)",
    "comm": "comm (gloo collectives)",
    "wait": "wait (rank skew, --split-wait)",
    "other": "other (step - sum)",
}


def run_overrides(args: argparse.Namespace, draft: str, mode: str, out_dir: str) -> list[str]:
    """The run the worker builds: the default draft's job with eval and checkpoints outside the window."""
    over = [
        f"draft={draft}",
        "target=tiny-llama",
        f"deepspeed={args.deepspeed}",
        "logger=none",
        "train.progress=false",
        f"output_dir={out_dir}",
        f"train.max_steps={args.warmup + args.steps + 1}",  # the last step validates/saves/exports: after it
        "train.eval_every=0",
        "train.save_every=0",
        f"data.max_tokens={args.tokens}",
        f"data.train_files=[{TRAIN_FILE}]",
        "data.valid_files=[]",  # the cache holds the training rows only; validation is outside the window
    ]
    if mode == "offline":
        over += ["data.mode=offline", f"data.cache_dir={args.cache}"]
    return over + list(args.overrides)


def build_cache(args: argparse.Namespace) -> None:
    if (Path(args.cache) / "manifest.json").is_file():
        return
    cmd = [
        sys.executable, "-m", "data", "cache", "--target", TARGET_DIR, "--data", "embedded-pydocs",
        "--out", args.cache, "--layers=1,2,3,-1", "--dtype", "float32", "--no-valid",
        f"max_tokens={args.tokens}", f"train_files=[{TRAIN_FILE}]", "valid_files=[]",
    ]  # fmt: skip
    print(f"[bench] building the offline cache: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def launch(args: argparse.Namespace, code: Path, draft: str, mode: str) -> dict[str, Any]:
    """One torchrun job of `--worker` with `code`'s train/ and data/ packages; returns rank 0's JSON."""
    out_dir = tempfile.mkdtemp(prefix=f"breakdown-{draft}-{mode}-", dir=REPO / "outputs")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
        str(HERE), "--worker", f"--steps={args.steps}", f"--warmup={args.warmup}",
        *(["--split-wait"] if args.split_wait else []), "--",
        *run_overrides(args, draft, mode, out_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    try:
        proc = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.exit(
            f"[bench] worker failed ({draft}, {mode}, {code}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return json.loads(lines[-1][len(MARK) :])


def mean_over_ranks(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(ranks)
    ms = {k: sum(r["ms"][k] for r in ranks) / n for k in ranks[0]["ms"]}
    return {"ms": ms, "step_ms": sum(r["step_ms"] for r in ranks) / n, "ranks": ranks}


def table(title: str, res: dict[str, Any], tokens_per_step: int) -> None:
    step = res["step_ms"]
    per_rank = ", ".join(f"{r['step_ms']:.1f}" for r in res["ranks"])
    print(
        f"\n{title}: step {step:.1f} ms (ranks {per_rank}), {tokens_per_step / step * 1e3:,.0f} target tokens/s"
    )
    print(f"  {'part':<36}{'ms/step':>10}{'% step':>9}")
    for key, label in LABELS.items():
        v = res["ms"][key]
        if key == "wait" and not any(r["calls_per_step"]["comm"] and r["ms"]["wait"] for r in res["ranks"]):
            continue  # no --split-wait: the skew between ranks is inside comm
        print(f"  {label:<36}{v:>10.2f}{100 * v / step:>8.1f}%")
    outside = sum(res["ms"][k] for k in ("data", "comm", "wait", "other"))
    print(f"  {'outside the model calls':<36}{outside:>10.2f}{100 * outside / step:>8.1f}%")
    calls = res["ranks"][0]["calls_per_step"]
    print("  calls per step (rank 0): " + ", ".join(f"{k} {v:g}" for k, v in calls.items()))
    by_name = res["ranks"][0]["comm_ms_by_name"]
    print("  comm ms/step by collective (rank 0): " + ", ".join(f"{k} {v:.2f}" for k, v in by_name.items()))
    if any(r["async_collectives"] for r in res["ranks"]):
        print("  WARNING: async collectives seen; only their launch was timed as comm")


def parent(args: argparse.Namespace) -> None:
    (REPO / "outputs").mkdir(exist_ok=True)
    if "offline" in args.modes:
        build_cache(args)
    codes = [("after", REPO)] if args.baseline is None else [("before", Path(args.baseline)), ("after", REPO)]
    print(
        f"[bench] {args.nproc} ranks, deepspeed={args.deepspeed}, {args.warmup} warm-up + {args.steps} timed "
        f"steps, data.max_tokens={args.tokens}, split wait {args.split_wait}; overrides: {' '.join(args.overrides) or '(none)'}; code: "
        + ", ".join(f"{name}={path}" for name, path in codes),
        flush=True,
    )
    for draft in args.drafts:
        for mode in args.modes:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in codes}
            for r in range(args.rounds):  # before/after, then after/before: load drifts hit both alike
                for name, code in codes if r % 2 == 0 else codes[::-1]:
                    runs[name].append(launch(args, code, draft, mode))
            for name, _ in codes:
                best = min(runs[name], key=lambda r: r["mean"]["step_ms"])  # the least disturbed round
                label = f"{draft} / {mode}" + (f" [{name}]" if len(codes) > 1 else "")
                table(label, best["mean"], best["tokens_per_step"])
            if len(codes) > 1:
                b = min(r["mean"]["step_ms"] for r in runs["before"])
                a = min(r["mean"]["step_ms"] for r in runs["after"])
                print(f"  step time after / before = {a / b:.3f} (speed-up {b / a:.3f}x)")


def ops(args: argparse.Namespace) -> None:
    from tests.bench.step_ops import objective_side_by_side, print_side_by_side

    print_side_by_side()
    (REPO / "outputs").mkdir(exist_ok=True)
    build_cache(args)
    print(
        "\nall three together: forward_loss + backward on one cached micro-batch, old ops vs new (1 thread):"
    )
    for draft in args.drafts:
        with tempfile.TemporaryDirectory(dir=REPO / "outputs") as out_dir:
            over = [
                o
                for o in run_overrides(args, draft, "offline", out_dir)
                if not o.startswith(("draft=", "deep"))
            ]
            old, new, same = objective_side_by_side(draft, over)
        print(
            f"  {draft:<8} old {old:8.1f} ms   new {new:8.1f} ms   new/old {new / old:.3f}   same loss {same}"
        )


def worker(steps: int, warmup: int, split_wait: bool, overrides: list[str]) -> None:
    import torch
    from hydra import compose, initialize_config_dir

    from data.paths import CONF_DIR, register_resolvers
    from train.config import to_typed
    from train.trainer import Trainer

    sys.path.insert(0, str(HERE.parent))  # step_phases beside this file, whichever checkout runs the loop
    from step_phases import PhaseClock, instrument, summary, time_collectives

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=overrides))
    clock = PhaseClock(torch.device("cpu"))
    barrier = time_collectives(clock)  # before the engine exists: DeepSpeed keeps references to collectives
    trainer = Trainer(cfg)
    clock.cuda = trainer.device.type == "cuda"
    instrument(trainer, clock, warmup, steps, barrier)
    clock.barrier = barrier if split_wait else None
    tokens_per_step = trainer._step_tokens(warmup)  # every step of packed text reads full rows
    trainer.fit()
    mine = summary(clock, steps, tokens_per_step)
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    if torch.distributed.get_rank() == 0:
        print(
            MARK + json.dumps({"mean": mean_over_ranks(everyone), "tokens_per_step": tokens_per_step}),
            flush=True,
        )
    # Leave the group before the interpreter's teardown: a live gloo group there once aborted rank 0 ("terminate
    # called without an active exception") after the result was printed.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drafts", default="eagle,eagle3", type=lambda s: s.split(","))
    p.add_argument("--modes", default="online,offline", type=lambda s: s.split(","))
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=5, help="steps before the window opens")
    p.add_argument("--tokens", type=int, default=200_000, help="data.max_tokens of every run (and the cache)")
    p.add_argument(
        "--cache", default=None, help="offline cache folder (default outputs/bench-breakdown-cache-N)"
    )
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--deepspeed", default="zero2", help="conf/deepspeed option of every run")
    p.add_argument(
        "--split-wait", action="store_true", help="a barrier before each collective: rank skew timed apart"
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--baseline", default=None, help="another checkout: its code runs the same workers")
    p.add_argument("--ops", action="store_true", help="only the objectives' per-step cuts, old vs new")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = p.parse_args()
    if args.worker:
        worker(args.steps, args.warmup, args.split_wait, args.overrides)
        return
    args.cache = args.cache or str(REPO / "outputs" / f"bench-breakdown-cache-{args.tokens}")
    if args.ops:
        ops(args)
        return
    parent(args)


if __name__ == "__main__":
    main()
