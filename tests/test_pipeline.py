"""The recipe pipeline: experiments compose, stages chain through exports, finished stages are skipped."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from data.paths import CONF_DIR, register_resolvers
from data.typed import to_typed as to_typed_as
from tests.conftest import REPO, TINY_LLAMA
from tests.readme_blocks import DOCS, section_commands
from train.config import to_typed
from train.pipeline import PipelineConfig, run_pipeline, stage_command, target_overrides

register_resolvers()
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_into_valid_stage_configs(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        pipe = compose("pipeline", overrides=[f"experiment={experiment}"])
        assert pipe.name == experiment and pipe.stages
        for stage in pipe.stages:
            typed = to_typed_as(PipelineConfig, pipe, "pipeline")
            to_typed(
                compose("train", overrides=[*target_overrides(typed.target), *pipe.common, *stage.overrides])
            )


def test_a_seed_reaches_every_stage_and_the_recipe_script_pools_seeds(tmp_path: Path) -> None:
    """`seed=1` on a recipe: every stage's composed train config has train.seed 1 (a stage's own overrides
    cannot leave it at 0); no seed leaves train.yaml's. docs/recipes.md's `SEEDS="0 1 2" bash
    launch/compare_tiny_recipes.sh` trains each recipe once per seed under its own name and pools them into one eval.compare entry (checked with `python`
    replaced by a recorder: the runs take ~2 hours)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for seed, want in ((None, 0), (1, 1)):
            extra = [] if seed is None else ["name=scylla-tiny-s1", f"seed={seed}"]
            typed = to_typed_as(PipelineConfig, compose("pipeline", overrides=["experiment=scylla-tiny", *extra]),
                                "pipeline")  # fmt: skip
            assert len(typed.stages) == 3
            for stage in typed.stages:
                words = stage_command(typed, stage, tmp_path, None)
                overrides = words[words.index("train") + 1 :]
                assert to_typed(compose("train", overrides=overrides)).train.seed == want, (seed, stage.name)
    # docs/recipes.md's line, run as printed (bash -c, from the repository root) with `python` a recorder.
    (line,) = [c for c in section_commands("Compare recipes or drafts on the same prompts", DOCS / "recipes.md")
               if c.startswith("SEEDS=")]  # fmt: skip
    bindir, log = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    (bindir / "python").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bindir / "python").chmod(0o755)
    proc = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": f"{bindir}:/usr/bin:/bin"}, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    recipes = ("scylla", "scylla1", "eagle2", "eagle3", "medusa", "dense")
    assert [c.split(" eval=")[0] for c in calls[:-1]] == [
        f"-m train.pipeline experiment={r}-tiny name={r}-tiny{'' if s == 0 else f'-s{s}'} seed={s}"
        for r in recipes for s in range(3)
    ], calls  # fmt: skip
    entries = " ".join(
        f"{r}=" + ",".join(f"outputs/experiments/{r}-tiny{'' if s == 0 else f'-s{s}'}" for s in range(3))
        for r in recipes
    )
    assert calls[-1] == (
        f"-m eval.compare {entries} --target tiny-llama --temperatures 0 1 "
        "--num-prompts 64 --out outputs/compare-tiny --overrides"
    ), calls[-1]


def test_stages_chain_resume_inside_a_stage_and_rerun_skips_finished(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = [
        f"target.name_or_path={TINY_LLAMA}", "draft=eagle", "deepspeed=none", "logger=none",
        f"data.train_files=[{small_corpus}]", f"data.valid_files=[{small_corpus}]", "data.seq_len=64",
        "train.micro_batch_size=2", "train.progress=false", "train.eval_batches=1", "train.log_every=1",
        "train.save_every=2",
    ]  # fmt: skip
    marker = tmp_path / "prepared.txt"
    cfg = OmegaConf.create(
        {
            "name": "t",
            "nproc": 1,
            # A prepare step (as regeneration is for distill): run once, skipped when its output exists.
            "prepare": [
                {
                    "command": [
                        "-c",
                        "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x')",
                        str(marker),
                    ],
                    "creates": str(marker),
                }
            ],
            "common": common,
            "stages": [
                {"name": "first", "overrides": ["train.max_steps=2"]},
                {"name": "second", "overrides": ["train.max_steps=6", "optim.lr=1e-4"]},
            ],
            "eval": [
                f"target.name_or_path={TINY_LLAMA}",
                "logger=none",
                "prompts.num_prompts=2",
                "max_new_tokens=8",
                "mode=chain",
                "progress=false",
            ],  # fmt: skip
            "output_root": str(tmp_path / "exp"),
        }
    )
    # The second stage dies while saving step 4 (its step-2 checkpoint is whole): the pipeline stops there.
    monkeypatch.setenv("DRAFTFORGE_TEST_FAULTS", json.dumps({"save_error": {"rank": 0, "step": 4}}))
    with pytest.raises(subprocess.CalledProcessError):
        run_pipeline(cfg)
    second = tmp_path / "exp" / "second"
    assert (tmp_path / "exp" / "first" / "export" / "config.json").is_file()
    assert not (second / "export").exists()
    monkeypatch.delenv("DRAFTFORGE_TEST_FAULTS")
    summary = run_pipeline(cfg)  # first stage skipped, second resumed from its step-2 checkpoint
    steps = [json.loads(line)["step"] for line in open(second / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 3, 4, 5, 6], steps
    meta = json.loads((second / "export" / "config.json").read_text())["meta"]
    assert meta["tokens_seen"] == 6 * 2 * 64  # counted once per step across the restart (packed text)
    resolved = OmegaConf.load(second / "config.yaml")
    assert resolved.stage.init_from == str(tmp_path / "exp" / "first" / "export")
    assert [s["name"] for s in summary["stages"]] == ["first", "second"]
    assert (tmp_path / "exp" / "eval" / "results.json").is_file()
    stamp = (second / "export" / "model.safetensors").stat().st_mtime_ns
    prepared = marker.stat().st_mtime_ns
    run_pipeline(cfg)  # everything finished: nothing is retrained or re-prepared
    assert (second / "export" / "model.safetensors").stat().st_mtime_ns == stamp
    assert marker.stat().st_mtime_ns == prepared

    # compare: the experiment folder (last stage) and the first stage's export, same prompts, T=0 and T=1.
    out = tmp_path / "cmp"

    def compare(*overrides: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "eval.compare", f"exp={tmp_path / 'exp'}", f"first={tmp_path / 'exp' / 'first' / 'export'}",
             "--target=tiny-llama", "--num-prompts=2", f"--out={out}", "--overrides", "mode=chain", *overrides],
            cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    compare("max_new_tokens=6")
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["evals_reused"] for r in rows] == ["0/2", "0/2"]
    # Run again: every eval is read back, nothing decoded, the same table; another config decodes again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/results.json")}
    assert len(stamps) == 4, sorted(stamps)
    assert compare("max_new_tokens=6").stdout.count("reusing the finished eval") == 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/results.json")} == stamps
    again = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["evals_reused"] for r in again] == ["2/2", "2/2"]
    assert [(r["tau@T=0"], r["tau@T=1"]) for r in again] == [(r["tau@T=0"], r["tau@T=1"]) for r in rows]
    # A retrained export (its recorded metadata differs) is decoded again; the other draft's evals are not.
    first_config = tmp_path / "exp" / "first" / "export" / "config.json"
    exported = json.loads(first_config.read_text())
    exported["meta"]["created"] = "retrained"
    first_config.write_text(json.dumps(exported))
    assert compare("max_new_tokens=6").stdout.count("reusing the finished eval") == 2
    assert [r["evals_reused"] for r in csv.DictReader(open(out / "compare.csv"))] == ["2/2", "0/2"]
    assert "reusing" not in compare("max_new_tokens=5").stdout
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())
    assert [r["recipe"] for r in rows] == ["exp", "first"]
    assert rows[0]["tokens"].startswith("first ") and "second" in rows[0]["tokens"]
    assert all(float(r["tau@T=0"]) >= 1.0 and float(r["tau@T=1"]) >= 1.0 for r in rows)
    for r in rows:  # each tau with its 95 % interval over the prompts (eval.compare, eval/intervals.py)
        lo, hi = json.loads(r["tau@T=0 ci95"])
        assert lo <= float(r["tau@T=0"]) <= hi and r["seeds"] == "1"
    assert (out / "compare.png").is_file()
