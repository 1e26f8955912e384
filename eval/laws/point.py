"""`python -m eval.laws.point [-m] sweep/grid=<grid> key=value ...`: run one sweep point (or, with -m, a
Hydra multirun of them, on any Hydra launcher: local, SLURM through submitit).

A point trains the draft (a `torchrun -m train` run under outputs/sweeps/<sweep>/train/<train_key>/, shared
by every point with the same training overrides; skipped when its export exists, resumed when interrupted),
decodes it at each temperature and mode (each eval folder skipped when its results.json exists), writes
points/<point_id>/record.json and appends it to the sweep's results table. A finished point is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from data.paths import CONF_DIR, register_resolvers
from data.tracking import LoggerConfig, make_logger
from eval.config import EvalConfig, to_eval_config
from eval.laws.config import PointConfig, to_point_config
from eval.laws.records import append_record, build_record, flatten, missing_fields

register_resolvers()
EVAL_SECONDS = "eval_seconds.txt"


def tokens_per_step(cfg: PointConfig) -> int:
    """Target tokens of one optimizer step of the point's training run (packed text has no padding), from the
    training config composed as `python -m train` would (the compose API works inside a Hydra app)."""
    from hydra import compose

    import train.config  # noqa: F401  registers `train_schema`, which conf/train.yaml composes onto

    run = compose("train", overrides=cfg.train_overrides())
    return cfg.nproc * run.train.micro_batch_size * run.train.grad_accum * run.data.seq_len


def train_command(cfg: PointConfig, out: Path) -> list[str]:
    overrides = [*cfg.train_overrides(tokens_per_step(cfg)), f"output_dir={out}", f"run_name={cfg.name}-{cfg.train_key}",
                 f"logger.group=sweep-{cfg.name}", "resume=true"]  # fmt: skip
    # torchrun also for one rank: it sets the rendezvous variables a single process would otherwise need.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
            "-m", "train", *overrides]  # fmt: skip


def eval_runs(cfg: PointConfig) -> dict[str, list[str]]:
    """{record key: eval overrides}: every temperature x mode, then the extra tree sizes at temperature 0."""
    # A block drafter's chain drafts its whole block (k = block - 1 mask slots), so the chain's cost and tau
    # are those of the block size the point trained (this overrides a draft_length in eval.overrides).
    chain = [] if cfg.block is None else [f"draft_length={cfg.block - 1}"]
    runs = {
        f"t{t:g}/{m}": [f"temperature={t}", f"mode={m}", *(chain if m == "chain" else [])]
        for t in cfg.eval.temperatures
        for m in cfg.eval.modes
    }
    for size in cfg.eval.tree_budgets:
        runs[f"t0/tree-s{size}"] = ["temperature=0.0", "mode=tree", f"tree.budget={size}"]
    return runs


def eval_config(cfg: PointConfig, overrides: list[str], export: Path, out: Path) -> EvalConfig:
    """The same schema `python -m eval` fills, built without a second Hydra app inside this one."""
    base = OmegaConf.create({
        "target": OmegaConf.structured(cfg.target),
        "logger": {"name": "none"}, "draft_path": str(export), "output_dir": str(out), "progress": False,
        "batch_sizes": [cfg.eval.batch_size],
    })  # fmt: skip
    return to_eval_config(OmegaConf.merge(base, OmegaConf.from_dotlist([*cfg.eval.overrides, *overrides])))


def run_evals(cfg: PointConfig, export: Path, root: Path) -> tuple[dict[str, Path], float]:
    from eval.run import evaluate, load_target  # torch and transformers only when there is work to do

    target, evals, seconds = None, {}, 0.0
    for key, overrides in eval_runs(cfg).items():
        out = root / "eval" / cfg.train_key / f"{cfg.eval_key}-{key.replace('/', '-')}"
        results = out / "results.json"
        if not results.is_file():
            ecfg = eval_config(cfg, overrides, export, out)
            target = target or load_target(ecfg)
            start = time.perf_counter()
            print(f"[sweep] {cfg.point_id}: eval {key} -> {out}", flush=True)
            evaluate(ecfg, target=target)
            (out / EVAL_SECONDS).write_text(f"{time.perf_counter() - start:.1f}\n")
        evals[key] = results
        seconds += float((out / EVAL_SECONDS).read_text())
    return evals, seconds


def point_identity(cfg: PointConfig) -> dict[str, Any]:
    """What a record says about its point: every axis' value (block_size None for a draft without blocks)."""
    return {"point_id": cfg.point_id, "sweep": cfg.name, "axis": cfg.axis, "target": cfg.target.name_or_path,
            "draft": cfg.draft_name, "depth": cfg.depth, "block_size": cfg.block, "target_tokens": cfg.tokens,
            "batch_size": cfg.eval.batch_size, "train_key": cfg.train_key}  # fmt: skip


def run_point(cfg: PointConfig) -> dict[str, Any]:
    root = Path(cfg.output_root)
    record_path = root / "points" / cfg.point_id / "record.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if not missing_fields(record):
            print(f"[sweep] {cfg.point_id}: finished earlier, skipping", flush=True)
            append_record(root, record)  # a no-op unless the table lost it
            return record
    train_dir = root / "train" / cfg.train_key
    export = train_dir / "export"
    if not (export / "config.json").is_file():
        print(f"[sweep] {cfg.point_id}: training -> {train_dir}", flush=True)
        subprocess.run(train_command(cfg, train_dir), check=True)
    evals, seconds = run_evals(cfg, export, root)
    record = build_record(point_identity(cfg), export, evals, seconds)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, record_path)
    append_record(root, record)
    log_record(cfg, record, record_path.parent)
    taus = ", ".join(f"{key} {row['tau']:.3f}" for key, row in record["results"].items())
    print(f"[sweep] {cfg.point_id}: done, tau {taus}", flush=True)
    return record


def log_record(cfg: PointConfig, record: dict[str, Any], run_dir: Path) -> None:
    """One W&B run per point, grouped by sweep; the numbers as summary, so W&B tables the sweep."""
    lcfg = LoggerConfig(name=cfg.tracking, run_name=cfg.point_id, group=f"sweep-{cfg.name}", tags=[cfg.axis])
    logger = make_logger(lcfg, run_dir, {"point": record["point_id"], "axis": cfg.axis}, is_main=True)
    try:
        flat = {k: v for k, v in flatten(record).items() if isinstance(v, int | float)}
        logger.summary(flat)
    finally:
        logger.finish()


@hydra.main(config_path=str(CONF_DIR), config_name="sweep/point", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        point = to_point_config(cfg)
    except ValueError as err:  # an unknown key, a bad axis or block: one line, before any work
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    run_point(point)


if __name__ == "__main__":
    main()
