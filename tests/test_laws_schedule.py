"""The batch law written into vLLM's schedule (eval.laws.schedule) without vLLM: the k chosen per batch size
against crossing points worked out by hand, the config eval.plan writes from a laws file with vLLM's chain
costs, and the refusals (parallel drafting, no chain costs). tests/test_vllm_schedule.py has real vLLM
check and serve what is written here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from eval.laws.joint import fit_joint
from eval.laws.schedule import (
    FIELD,
    ScheduleRefused,
    fitted_lines,
    k_at,
    k_schedule,
    speculative_config,
)
from eval.laws.schedule_vllm import summary
from eval.plan import main

PARAMS = 2.0e6


def test_each_batch_size_gets_the_k_whose_fitted_line_is_highest() -> None:
    # k=1 flat at 1.0; k=3 = 1.5 - 0.1 ln B: they cross at ln B = 5, B = e^5 = 148.4.
    speed = {b: {1: 1.0, 3: 1.5 - 0.1 * math.log(b)} for b in (1, 8, 64)}
    lines = fitted_lines(speed)
    assert lines[3] == pytest.approx([1.5, -0.1]) and lines[1] == pytest.approx([1.0, 0.0], abs=1e-12)
    assert k_schedule(speed, 256) == [[1, 148, 3], [149, 256, 1]]
    assert k_schedule(speed, 100) == [[1, 100, 3]]  # the crossing lies beyond max_batch
    # A noisy best k per measured batch (3, 1, 3) does not flip the schedule: the lines decide.
    noisy = {1: {1: 1.0, 3: 1.6}, 8: {1: 1.3, 3: 1.2}, 64: {1: 1.0, 3: 1.2}}
    a3, b3 = np.polyfit(np.log([1, 8, 64]), [1.6, 1.2, 1.2], 1)[::-1]
    a1, b1 = np.polyfit(np.log([1, 8, 64]), [1.0, 1.3, 1.0], 1)[::-1]
    cross = math.exp((a1 - a3) / (b3 - b1))  # k=3 above k=1 below this batch size
    assert 64 < cross < 256  # (90.4): k=3 from 1 to 90, the measured best at 8 (k=1) notwithstanding
    assert k_schedule(noisy, 256) == [[1, math.floor(cross), 3], [math.floor(cross) + 1, 256, 1]]
    assert [k_at(k_schedule(noisy, 256), b) for b in (1, 8, 64, 500)] == [3, 3, 3, 1]


def test_the_config_holds_the_schedule_and_its_largest_k_and_refuses_parallel_drafting() -> None:
    cfg = speculative_config("eagle3", "/d", [[1, 4, 3], [5, 256, 1]])
    assert cfg == {
        "method": "eagle3",
        "model": "/d",
        "num_speculative_tokens": 3,
        FIELD: [[1, 4, 3], [5, 256, 1]],
    }
    with pytest.raises(ScheduleRefused, match="llm_base_proposer.py:114"):
        speculative_config("eagle3", "/d", [[1, 4, 3]], parallel_drafting=True)


def chain_row(batch: int, base_ms: float, k_costs: dict[int, tuple[float, float]]) -> dict:
    """A batch row as eval.laws.batch_vllm_report writes it: chain-k<k> shapes with tau and costs, and the
    default tree's tau (the planner's anchor)."""
    shapes = {f"chain-k{k}": {"tau": tau, "speedup": tau * base_ms / (base_ms + extra), "draft_ms": extra,
                              "verify_ms": base_ms} for k, (tau, extra) in k_costs.items()}  # fmt: skip
    shapes["tree"] = {"tau": 2.0, "speedup": None, "draft_ms": None, "verify_ms": None}
    return {"batch_size": batch, "depth": 2, "baseline_step_ms": base_ms, "shapes": shapes}


def vllm_laws(path: Path) -> Path:
    """A sweep's laws with vLLM's batch axis where a long chain pays at batch 1 and not at batch 8 or 32."""
    rng = np.random.default_rng(0)
    t = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 1e5, 1e5])
    p = np.array([PARAMS] * 5 + [PARAMS / 2, PARAMS * 2])
    y = 0.5 + 0.15 * np.log(t) + 0.05 * np.log(p) + rng.normal(0, 0.01, t.size)
    batch = [chain_row(1, 10.0, {1: (1.5, 2.0), 3: (2.2, 4.0)}),  # k=1 1.25, k=3 1.57
             chain_row(8, 20.0, {1: (1.5, 6.0), 3: (2.2, 20.0)}),  # k=1 1.15, k=3 1.10
             chain_row(32, 40.0, {1: (1.5, 14.0), 3: (2.2, 60.0)})]  # k=1 1.11, k=3 0.88  # fmt: skip
    laws = {"joint": fit_joint(t, p, y, n_boot=100).to_json(), "capacity_map": {"2": PARAMS},
            "target_params": 4.2e6, "ttt_steps": 1, "max_tau": 6, "batch": batch, "tokens_depth": 2}  # fmt: skip
    path.write_text(json.dumps(laws))
    return path


def test_plan_writes_vllms_config_from_the_batch_law(tmp_path: Path, capsys) -> None:
    draft = tmp_path / "served"
    draft.mkdir()
    (draft / "config.json").write_text(json.dumps({"speculators_model_type": "eagle3"}))
    laws, out = vllm_laws(tmp_path / "laws.json"), tmp_path / "spec.json"
    argv = [str(laws), "--compute", "1e13", "--batch", "8", "--depths", "2", "--engine", "vllm",
            "--draft", str(draft), "--out", str(out), "--max-batch", "64"]  # fmt: skip
    main(argv)
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    # At the measured depth the planner's speed-ups are the measured ones times one factor (law tau / tree
    # tau), so the k chosen at each batch size is where the measured per-k lines cross.
    u = np.log([1, 8, 32])
    k1 = np.polyfit(u, [1.5 * 10 / 12, 1.5 * 20 / 26, 1.5 * 40 / 54], 1)
    k3 = np.polyfit(u, [2.2 * 10 / 14, 2.2 * 20 / 40, 2.2 * 40 / 100], 1)
    cross = math.exp((k1[1] - k3[1]) / (k3[0] - k1[0]))
    assert 1 < cross < 8
    assert written == {"method": "eagle3", "model": str(draft.resolve()), "num_speculative_tokens": 3,
                       FIELD: [[1, math.floor(cross), 3], [math.floor(cross) + 1, 64, 1]]}  # fmt: skip
    assert f"{FIELD} = {json.dumps(written[FIELD])}" in printed
    assert "batch sizes above 32, the largest measured" in printed


@pytest.mark.parametrize(
    ("extra", "config", "named"),
    [
        (["--parallel-drafting"], {}, "parallel_drafting"),
        ([], {"speculators_model_type": "peagle"}, "parallel-drafting head"),
        ([], None, "no config.json"),
    ],
)
def test_plan_refuses_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys, extra: list[str], config: dict | None, named: str
) -> None:
    draft = tmp_path / "served"
    draft.mkdir()
    if config is not None:
        (draft / "config.json").write_text(json.dumps(config))
    argv = [str(vllm_laws(tmp_path / "laws.json")), "--compute", "1e13", "--depths", "2", "--engine", "vllm",
            "--draft", str(draft), "--out", str(tmp_path / "spec.json"), *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("[plan] ") and named in err and "\n" not in err, err
    assert not (tmp_path / "spec.json").exists()


def test_plan_refuses_a_schedule_without_vllms_chain_costs(tmp_path: Path, capsys) -> None:
    data = json.loads(vllm_laws(tmp_path / "laws.json").read_text())
    for row in data["batch"]:  # our engine's batch axis: tree shapes only
        row["shapes"] = {"tree": {"tau": 2.0, "speedup": 0.8, "draft_ms": 1.0, "verify_ms": 2.0}}
    (tmp_path / "laws.json").write_text(json.dumps(data))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "laws.json"), "--compute", "1e13", "--depths", "2", "--engine", "vllm",
              "--draft", str(tmp_path / "d"), "--out", str(tmp_path / "spec.json")])  # fmt: skip
    assert exit_info.value.code == 2 and "eval.laws.batch_vllm" in capsys.readouterr().err


def test_the_measurement_summary_compares_the_schedule_with_the_best_fixed_k() -> None:
    """eval.laws.schedule_vllm's summary on rows as its `rows` writes them (speed-ups over the target alone)."""

    def row(run: str, batch: int, speedup: float, drafts: int = 10, drafted: int = 10) -> dict:
        return {"run": run, "batch_size": batch, "speedup": speedup, "num_drafts": drafts,
                "num_draft_tokens": drafted}  # fmt: skip

    table = [row("k1", 1, 0.8), row("k3", 1, 1.2), row("schedule", 1, 1.1, 10, 30),
             row("k1", 8, 0.9), row("k3", 8, 0.6), row("schedule", 8, 0.95, 12, 12)]  # fmt: skip
    earlier = {(1, 1): 0.7, (3, 1): 1.25, (1, 8): 0.95, (3, 8): 0.6}
    s = summary(table, [[1, 4, 3], [5, 64, 1]], earlier)
    assert s["noise_max_abs_speedup_diff"] == pytest.approx(0.1) and s["noise_pairs"] == 4
    b1, b8 = s["per_batch"]
    assert (b1["schedule_k"], b1["best_fixed"], b1["schedule_draft_tokens_per_draft"]) == (3, "k3", 3.0)
    assert b1["ratio"] == pytest.approx(1.1 / 1.2) and b8["ratio"] == pytest.approx(0.95 / 0.9)
    assert (b8["schedule_k"], b8["best_fixed"]) == (1, "k1")
