"""`python -m train.pipeline experiment=<name>`: a recipe's stages in order, then eval of the last export.

Each stage is a separate `torchrun -m train` run (its own folder, W&B run and resumable checkpoints) seeded
with `stage.init_from=<previous export>`; a fresh optimizer and schedule start each stage. A stage whose
export exists is finished and skipped; an interrupted one is resumed (`resume=true`). The W&B runs of one
experiment share `logger.group=<experiment name>`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from data.paths import CONF_DIR, register_resolvers
from data.typed import to_typed
from train.modeling.target import TargetConfig

register_resolvers()


@dataclass
class PrepareStep:
    command: list[str]  # arguments after `python`, e.g. [-m, data, regenerate, ...]
    creates: str  # the step is skipped when this path exists


@dataclass
class PipelineStage:
    name: str  # the stage's folder under output_root and its W&B run name suffix
    overrides: list[str] = field(default_factory=list)  # Hydra overrides for this stage's `python -m train`


@dataclass
class PipelineConfig:
    """`conf/pipeline.yaml` plus an experiment (conf/experiment/)."""

    name: str = "???"  # the experiment's name: outputs/experiments/<name>/<stage>/
    nproc: int = 2  # ranks per stage (torchrun --nproc_per_node)
    common: list[str] = field(default_factory=list)  # Hydra overrides given to every training stage
    prepare: list[PrepareStep] = field(default_factory=list)  # run first unless `creates` exists
    stages: list[PipelineStage] = field(default_factory=list)  # in order; stage.init_from is filled in
    eval: list[str] = field(default_factory=list)  # overrides for `python -m eval` on the last export
    output_root: str = "outputs/experiments/${name}"
    # train.seed of every stage (the draft's init and per-rank noise); None leaves the stages' own (0). One recipe
    # trained with several seeds: `name=<recipe>-s1 seed=1`, ... (launch/compare_tiny_recipes.sh SEEDS=...).
    seed: int | None = None
    # The one target of the recipe (conf group `target/`): every stage, preparation step and eval gets it.
    # None (a config without conf/pipeline.yaml's defaults): stages take the target from `common`.
    target: TargetConfig | None = None
    tokenizer: str | None = None  # target.tokenizer, else the target folder: what preparation steps use
    target_key: str | None = None  # names files made per target (regenerated answers)
    # Recipe variables that the keys above interpolate (conf/experiment/base/*.yaml).
    dense_draft: str | None = None  # a small LM sharing the target's tokenizer (dense recipes)
    # DFlash recipes: the target layers the head fuses, as a Hydra list ("[2,9,16,23,30]"): DFlash's published
    # rule for this target's depth, kept beside the target (conf/experiment/base/<target>.yaml says why)
    dflash_feature_layers: str | None = None
    regenerated: str | None = None  # where the regeneration step writes the target's answers
    regenerate_step: PrepareStep | None = None
    budget_scale: float = 1.0  # tiny recipes: DRAFTFORGE_BUDGET_SCALE times every token budget


def _quote(value: str) -> str:
    """A Hydra override value: quoted unless it is plainly a path or a name."""
    return value if re.fullmatch(r"[\w/.:+@~-]+", value) else "'" + value.replace("'", "\\'") + "'"


def target_overrides(target: TargetConfig | None) -> list[str]:
    """The pipeline's target as overrides of every field, so stages and eval run on exactly it."""
    out: list[str] = []
    if target is None:
        return out
    for f in dataclasses.fields(TargetConfig):
        value = getattr(target, f.name)
        out.append(f"target.{f.name}={'null' if value is None else _quote(str(value))}")
    return out


def stage_command(cfg: PipelineConfig, stage: PipelineStage, out: Path, init_from: Path | None) -> list[str]:
    overrides = [
        *target_overrides(cfg.target),
        *cfg.common,
        *stage.overrides,
        *([] if cfg.seed is None else [f"train.seed={cfg.seed}"]),
        f"output_dir={out}",
        f"run_name={cfg.name}-{stage.name}",
        f"logger.group={cfg.name}",
        "resume=true",
    ]
    if init_from is not None:
        overrides.append(f"stage.init_from={init_from}")
    if cfg.nproc == 1:
        return [sys.executable, "-m", "train", *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
            "-m", "train", *overrides]  # fmt: skip


def run_pipeline(cfg: PipelineConfig | DictConfig) -> dict[str, Any]:
    if not isinstance(cfg, PipelineConfig):
        cfg = to_typed(PipelineConfig, cfg, "pipeline config")
    root = Path(cfg.output_root)
    root.mkdir(parents=True, exist_ok=True)
    for step in cfg.prepare:
        # e.g. regenerating the target's answers for a distill stage; skipped once its output exists.
        if Path(step.creates).exists():
            print(f"[pipeline] prepare: {step.creates} exists, skipping", flush=True)
            continue
        print(f"[pipeline] prepare: {' '.join(step.command)}", flush=True)
        subprocess.run([sys.executable, *step.command], check=True)
    previous: Path | None = None
    summary: dict[str, Any] = {"experiment": cfg.name, "stages": []}
    for stage in cfg.stages:
        out = root / stage.name
        export = out / "export"
        if (export / "config.json").is_file():
            print(f"[pipeline] {stage.name}: finished earlier, skipping ({export})", flush=True)
        else:
            print(f"[pipeline] {stage.name}: training -> {out}", flush=True)
            subprocess.run(stage_command(cfg, stage, out, previous), check=True)
        meta = json.loads((export / "config.json").read_text())["meta"]
        summary["stages"].append(
            {"name": stage.name, "tokens_seen": meta.get("tokens_seen"), "export": str(export)}
        )
        previous = export
    if previous is None:
        raise ValueError(f"experiment {cfg.name}: no stages")
    eval_dir = root / "eval"
    if not (eval_dir / "results.json").is_file():
        cmd = [sys.executable, "-m", "eval", *target_overrides(cfg.target), *cfg.eval, f"draft_path={previous}",
               f"output_dir={eval_dir}"]  # fmt: skip
        subprocess.run(cmd, check=True)
    summary["eval"] = str(eval_dir / "results.json")
    (root / "pipeline.json").write_text(json.dumps(summary, indent=2))
    print(f"[pipeline] {cfg.name}: done; summary in {root / 'pipeline.json'}", flush=True)
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="pipeline", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_pipeline(to_typed(PipelineConfig, cfg, "pipeline config"))


if __name__ == "__main__":
    main()
