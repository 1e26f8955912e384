"""`python -m eval.laws.cost [llama3.1-8b qwen2.5-7b]`: GPU-hours of the cluster sweep grids, computed from
the grid configs (conf/sweep/<target>-{tokens,depth,batch}.yaml, and the depth grid again at the largest
token budget). Trainings shared by several points (same training overrides) are counted once.

Assumptions (printed with the totals): training runs at MFU x peak bf16 dense throughput of the GPU (default
40 % of an H100 SXM's 989 TFLOP/s); training FLOPs = 6 * P_draft * T * ttt_steps + 2 * P_target * T (as in
the results records); P_draft is counted exactly by building the draft head on the meta device from the
target's architecture (numbers from each model's published config.json, below); eval decodes every prompt
twice (target alone and speculatively) at `eval_step_ms` per target forward (memory-bound decoding of a
7-8B bf16 model on one GPU, batch <= 64), one GPU per eval run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, register_resolvers
from eval.laws.config import PointConfig, to_point_config
from eval.laws.planner import Grid


@dataclass(frozen=True)
class Arch:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: float  # the whole target, from its model card


ARCHS = {  # from the models' config.json on the hub (public); nothing is downloaded here. Keyed by the target's
    # folder or hub name, lower-cased, so a local copy (target.name_or_path=/models/Llama-3.1-8B-Instruct) matches.
    "llama-3.1-8b-instruct": Arch(4096, 14336, 32, 32, 8, 128, 128256, 8.03e9),
    "qwen2.5-7b-instruct": Arch(3584, 18944, 28, 28, 4, 128, 152064, 7.62e9),
}
GRIDS = ("tokens", "depth", "depth@largest", "batch")


def draft_params(arch: Arch, depth: int, draft_vocab: int) -> int:
    """Trainable parameters of the sweeps' head (PointConfig.draft_name: the Scylla head, EAGLE-3-style),
    counted on the meta device; it fuses the target layers its spec names for this target."""
    from train.drafts.registry import spec_for

    spec = spec_for(PointConfig.draft_name)
    layers = spec.target_layers(spec.default_config(PointConfig.draft_name), arch.layers)
    cfg = spec.head.config_class(hidden_size=arch.hidden, intermediate_size=arch.intermediate, num_heads=arch.heads,
                                 num_kv_heads=arch.kv_heads, head_dim=arch.head_dim, vocab_size=arch.vocab,
                                 draft_vocab_size=draft_vocab, num_layers=depth, feature_layers=list(layers))  # fmt: skip
    with torch.device("meta"):
        head = spec.head(cfg)
    return sum(p.numel() for p in head.parameters() if p.requires_grad)


def gpu_hours(flops: float, mfu: float, peak_tflops: float) -> float:
    """GPU-hours of `flops` of training at `mfu` of the GPU's peak."""
    return flops / (mfu * peak_tflops * 1e12) / 3600


def grid_of(target: str) -> Grid:
    """Where the `target` sweep's grid sits, for carrying other laws to it (eval.laws.planner.transfer):
    its tokens axis' largest budget and depth, and the draft's trainable parameters at every grid depth."""
    tokens_grid = grid_points(f"{target}-tokens", [])
    ref = max(tokens_grid, key=lambda p: p.tokens)
    arch = ARCHS[Path(ref.target.name_or_path).name.lower()]
    vocab = _override(ref, "draft.draft_vocab_size", arch.vocab)
    depths = sorted({p.depth for p in grid_points(f"{target}-depth", [])} | {ref.depth})
    return Grid(name=target, max_tokens=float(ref.tokens), tokens_depth=ref.depth,
                capacity={d: float(draft_params(arch, d, vocab)) for d in depths}, target_params=arch.params,
                ttt_steps=_override(ref, "draft.ttt_steps", 1))  # fmt: skip


def _override(cfg: PointConfig, key: str, default: int) -> int:
    for o in cfg.train:
        if o.startswith(f"{key}="):
            return int(o.split("=", 1)[1])
    return default


def grid_points(name: str, extra: list[str]) -> list[PointConfig]:
    """Every point of a basic-sweeper grid: the cartesian product of hydra.sweeper.params. As on a multirun's
    command line, an `extra` override with a comma list (`tokens=200000,400000`) sweeps that key instead of the
    grid's values; a bracketed or quoted value (`train=[a,b]`) is one value."""
    import itertools

    def swept(o: str) -> bool:
        value = o.partition("=")[2]
        return "," in value and not value.startswith(("[", "{", "'", '"'))

    fixed = [o for o in extra if not swept(o)]
    base = compose(f"sweep/{name}", overrides=fixed, return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in (base.hydra.sweeper.params or {}).items()}
    params |= {k: v.split(",") for k, _, v in (o.partition("=") for o in extra if swept(o))}
    points = []
    for combo in itertools.product(*params.values()):
        over = [*fixed, *(f"{k}={v}" for k, v in zip(params, combo, strict=True))]
        points.append(to_point_config(compose(f"sweep/{name}", overrides=over)))
    return points


def sweep_cost(target: str, mfu: float, peak_tflops: float, eval_step_ms: float) -> list[str]:
    lines, seen_train, seen_eval = [], set(), set()
    total_train = total_eval = 0.0
    tokens_grid = grid_points(f"{target}-tokens", [])
    largest = max(p.tokens for p in tokens_grid)
    for grid in GRIDS:
        name, _, at = grid.partition("@")
        pts = (
            tokens_grid
            if grid == "tokens"
            else grid_points(f"{target}-{name}", [f"tokens={largest}"] if at else [])
        )
        g_train = g_eval = 0.0
        for p in pts:
            arch = ARCHS[Path(p.target.name_or_path).name.lower()]
            if p.train_key not in seen_train:
                seen_train.add(p.train_key)
                pd = draft_params(arch, p.depth, _override(p, "draft.draft_vocab_size", arch.vocab))
                flops = (6 * pd * _override(p, "draft.ttt_steps", 1) + 2 * arch.params) * p.tokens
                g_train += gpu_hours(flops, mfu, peak_tflops)
            runs = len(p.eval.temperatures) * len(p.eval.modes) + len(p.eval.tree_budgets)
            prompts = _override_eval(p, "prompts.num_prompts", 16)
            new = _override_eval(p, "max_new_tokens", 64)
            if p.point_id not in seen_eval:
                seen_eval.add(p.point_id)
                steps = (
                    runs * 2 * -(-prompts // p.eval.batch_size) * new
                )  # upper bound: tau 1 for the spec run
                g_eval += steps * eval_step_ms / 3.6e6
        total_train += g_train
        total_eval += g_eval
        lines.append(
            f"  {grid:14s} {len(pts)} points: training {g_train:8.1f} GPU-h, eval {g_eval:6.1f} GPU-h"
        )
    lines.append(f"  {'total':14s} {total_train + total_eval:8.1f} GPU-h ({total_train:.1f} training + "
                 f"{total_eval:.1f} eval; {len(seen_train)} trainings)")  # fmt: skip
    return lines


def _override_eval(cfg: PointConfig, key: str, default: int) -> int:
    for o in cfg.eval.overrides:
        if o.startswith(f"{key}="):
            return int(o.split("=", 1)[1])
    return default


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.laws.cost", description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", default=["llama3.1-8b", "qwen2.5-7b"])
    p.add_argument("--mfu", type=float, default=0.40, help="model FLOPs utilisation of training")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak bf16 dense TFLOP/s (H100 SXM)")
    p.add_argument("--eval-step-ms", type=float, default=25.0, help="one target forward while decoding")
    args = p.parse_args(argv)
    register_resolvers()
    print(f"assumed: training at {args.mfu:.0%} MFU of {args.peak_tflops:g} TFLOP/s bf16 per GPU "
          f"({args.mfu * args.peak_tflops:.0f} TFLOP/s); eval {args.eval_step_ms:g} ms per target forward")  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for target in args.targets:
            print(f"{target}:")
            print("\n".join(sweep_cost(target, args.mfu, args.peak_tflops, args.eval_step_ms)))


if __name__ == "__main__":
    main()
