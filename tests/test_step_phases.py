"""The training-step breakdown's clock (tests/bench/step_phases.py): nested phases are charged exclusively, so
the parts and "other" add up to the window, and on a real one-process training run every phase is reached
through the calls the trainer really makes."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, register_resolvers
from tests.bench.step_phases import MODEL_PHASES, PHASES, PhaseClock, instrument, summary
from train.config import to_typed
from train.trainer import Trainer


def test_nested_phases_are_charged_once() -> None:
    clock = PhaseClock(torch.device("cpu"))
    inner = clock.timed(lambda: time.sleep(0.03), "comm")

    def outer_body() -> None:
        time.sleep(0.02)
        inner()

    outer = clock.timed(outer_body, "draft_backward")
    outer()  # outside the window: not counted
    clock.open_window()
    outer()
    time.sleep(0.01)  # between phases: "other"
    clock.close_window()
    t = clock.totals
    assert 0.02 <= t["draft_backward"] < 0.03 + 0.01, t  # its own 20 ms, not the 30 ms inside it
    assert 0.03 <= t["comm"] < 0.04, t
    s = summary(clock, steps=1, tokens_per_step=1)
    assert 10 <= s["ms"]["other"] < 20, s
    assert abs(sum(s["ms"].values()) - s["step_ms"]) < 1e-6
    assert clock.calls["draft_backward"] == clock.calls["comm"] == 1


def test_every_phase_of_a_real_training_step_is_timed(tmp_path: Path) -> None:
    register_resolvers()
    overrides = [
        "deepspeed=none", "logger=none", "train.progress=false", f"output_dir={tmp_path}", "train.max_steps=4",
        "train.micro_batch_size=2", "data.seq_len=64", "data.max_tokens=2000", "train.eval_every=0",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=overrides))
    trainer = Trainer(cfg)
    clock = PhaseClock(trainer.device)
    instrument(trainer, clock, warmup=1, steps=2, barrier=lambda: None)
    trainer.fit()
    s = summary(clock, steps=2, tokens_per_step=128)
    calls = s["calls_per_step"]
    # One train_batch and one forward_loss per step (both "data"), one call of each model phase.
    assert calls["data"] == 2 and all(calls[p] == 1 for p in MODEL_PHASES), calls
    assert all(s["ms"][p] > 0 for p in ("data", *MODEL_PHASES)), s["ms"]
    assert set(s["ms"]) == {*PHASES, "other"} and s["ms"]["other"] >= 0
