"""Every config in conf/ composes into the typed schema (rule 9), and bad input fails before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from data.paths import CONF_DIR, register_resolvers
from train.config import ConfigError, to_typed

register_resolvers()


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize(
    "override",
    [
        f"{g}={o}"
        for g in ("target", "draft", "stage", "data", "deepspeed", "logger")
        for o in group_options(g)
    ],
)
def test_every_group_option_composes(override: str) -> None:
    cfg = to_typed(compose_train([override]))
    group, option = override.split("=")
    assert getattr(cfg, group) is not None


def test_default_points_at_shipped_assets() -> None:
    cfg = to_typed(compose_train([]))
    assert Path(cfg.target.name_or_path).is_dir()
    assert all(Path(f).is_file() for f in cfg.data.train_files + cfg.data.valid_files)
    assert cfg.output_dir == "outputs/pretrain-eagle-tiny-llama"


def test_deepspeed_numbers_come_from_run_config() -> None:
    from train.engine import deepspeed_config

    cfg = to_typed(compose_train(["train.micro_batch_size=3", "train.grad_accum=5", "optim.grad_clip=0.25"]))
    ds = deepspeed_config(cfg, world=2)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (3, 5)
    assert ds["train_batch_size"] == 30 and ds["gradient_clipping"] == 0.25


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("+train.max_stepz=3", "max_stepz"),
        ("train.max_steps=lots", "max_steps"),
        ("target.dtype=float8", "target.dtype"),
        ("logger.mode=sometimes", "logger.mode"),
        ("train.micro_batch_size=0", "train.micro_batch_size"),
        ("draft.name=nonesuch", "draft.name"),
    ],
)
def test_bad_values_are_named(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        to_typed(compose_train([override]))


def test_unknown_key_without_plus_is_rejected_by_hydra() -> None:
    with pytest.raises(Exception, match="max_stepz"):
        compose_train(["train.max_stepz=3"])
