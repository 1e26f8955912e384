"""The planner: inverting the joint law (round trip through a real fit), refusing unreachable tau with a
reason, and picking the decoding shape a batch size's measured costs favour."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eval.laws.joint import fit_joint
from eval.laws.planner import (
    Grid,
    Laws,
    Unreachable,
    best_for_budget,
    outside_measured,
    tau_for_compute,
    tokens_for_tau,
    transfer,
)
from eval.plan import main

CAPACITY = {1: 1.0e6, 2: 2.0e6, 4: 4.0e6}


def _shape(tau: float, draft_ms: float, verify_ms: float) -> dict[str, float]:
    return {"tau": tau, "speedup": None, "draft_ms": draft_ms, "verify_ms": verify_ms}


BATCH = [  # verifying a big tree is nearly free at batch 1 and costly at batch 64 (compute-bound)
    {"batch_size": 1, "depth": 2, "baseline_step_ms": 2.0,
     "shapes": {"tree": _shape(3.0, 2.0, 2.5), "tree-s2": _shape(2.0, 1.0, 2.1)}},
    {"batch_size": 64, "depth": 2, "baseline_step_ms": 5.0,
     "shapes": {"tree": _shape(3.0, 4.0, 40.0), "tree-s2": _shape(2.0, 2.0, 6.0)}},
]  # fmt: skip


@pytest.fixture(scope="module")
def laws_json() -> dict:
    rng = np.random.default_rng(0)
    t = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 1e5, 1e5])
    p = np.array([2e6, 2e6, 2e6, 2e6, 2e6, 1e6, 4e6])
    y = 0.5 + 0.15 * np.log(t) + 0.05 * np.log(p) + rng.normal(0, 0.01, t.size)
    joint = fit_joint(t, p, y, n_boot=300).to_json()
    return {"joint": joint, "capacity_map": {str(k): v for k, v in CAPACITY.items()}, "target_params": 4.2e6,
            "ttt_steps": 3, "max_tau": 6, "batch": BATCH}  # fmt: skip


def test_tokens_for_tau_inverts_the_law(laws_json: dict) -> None:
    laws = Laws.from_json(laws_json)
    rows = tokens_for_tau(laws, 3.0, [1, 2, 4])
    assert {r["depth"] for r in rows} == {1, 2, 4}
    for r in rows:
        assert laws.tau(r["tokens"], CAPACITY[r["depth"]]) == pytest.approx(3.0)
        lo, hi = r["tokens_ci95"]
        assert lo < r["tokens"] < hi
        assert r["train_flops"] == pytest.approx(r["tokens"] * (6 * CAPACITY[r["depth"]] * 3 + 2 * 4.2e6))
    assert [r["train_flops"] for r in rows] == sorted(r["train_flops"] for r in rows)
    # A depth that was not measured: capacity from the line through the measured depths (1M per layer).
    assert laws.params_at(8) == pytest.approx(8.0e6)


@pytest.mark.parametrize(
    ("tau", "reason"),
    [(0.9, "every draft has tau >= 1"), (6.5, "verifies at most 5"), (5.9, "out of reach")],
)
def test_unreachable_tau_is_refused_with_the_reason(laws_json: dict, tau: float, reason: str) -> None:
    with pytest.raises(Unreachable, match=reason):
        tokens_for_tau(Laws.from_json(laws_json), tau, [1, 2, 4])


def test_cli_prints_interval_and_refuses_clearly(laws_json: dict, tmp_path, capsys) -> None:
    path = tmp_path / "laws.json"
    path.write_text(json.dumps(laws_json))
    main([str(path), "--tau", "3.0", "--depths", "1", "2"])
    out = capsys.readouterr().out
    assert "depth  1" in out and "cheapest: depth" in out and "[" in out
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--tau", "5.9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("[plan] unreachable: ") and "5.9" in err and "\n" not in err, err


def test_budget_picks_the_shape_the_batch_costs_favour(laws_json: dict) -> None:
    laws = Laws.from_json(laws_json)
    small = best_for_budget(laws, 1e15, 1, [2])
    large = best_for_budget(laws, 1e15, 48, [2])  # nearest measured batch in log scale: 64
    assert small[0]["shape"] == "tree" and large[0]["shape"] == "tree-s2"
    assert large[0]["measured_batch"] == 64
    top = large[0]
    tokens = 1e15 / (6 * 2e6 * 3 + 2 * 4.2e6)
    tau = laws.tau(tokens, 2e6) * 2.0 / 3.0
    assert top["tokens"] == pytest.approx(tokens)
    assert top["speedup"] == pytest.approx(tau * 5.0 / (2.0 + 6.0))
    assert top["tokens_per_s"] == pytest.approx(top["speedup"] * 64 * 1e3 / 5.0)
    lo, hi = top["speedup_ci95"]
    assert lo <= top["speedup"] <= hi
    assert not math.isnan(lo)


def test_transfer_moves_only_the_intercept_to_the_other_grid(laws_json: dict) -> None:
    laws = Laws.from_json({**laws_json, "tokens_depth": 2})
    laws.max_tokens_measured = 1e6
    grid = Grid(name="big", max_tokens=1e10, tokens_depth=4, capacity={1: 1e8, 2: 2e8, 4: 4e8},
                target_params=8e9, ttt_steps=7)  # fmt: skip
    moved = transfer(laws, grid)
    # The anchor: the big grid's largest budget at its tokens depth has the tau measured at ours.
    assert moved.tau(1e10, 4e8) == pytest.approx(laws.tau(1e6, 2e6))
    assert moved.tau(1e10, 4e8, moved.boot.T) == pytest.approx(laws.tau(1e6, 2e6, laws.boot.T))
    assert moved.coef[1:] == pytest.approx(laws.coef[1:])  # slopes per e-fold unchanged
    assert moved.tau(1e9, 4e8) - moved.tau(1e10, 4e8) == pytest.approx(
        laws.tau(1e5, 2e6) - laws.tau(1e6, 2e6)
    )
    assert moved.flops_per_token(2) == pytest.approx(6 * 2e8 * 7 + 2 * 8e9)
    assert moved.batch == []  # decoding costs are the tiny engine's, not the big target's
    with pytest.raises(ValueError, match="tokens axis' depth"):
        transfer(Laws.from_json(laws_json), grid)


def test_compute_without_batch_costs_ranks_depths_by_tau(laws_json: dict, tmp_path, capsys) -> None:
    laws = Laws.from_json({**laws_json, "batch": []})
    rows = tau_for_compute(laws, 1e14, [1, 2, 4])
    for r in rows:
        assert r["tokens"] == pytest.approx(1e14 / laws.flops_per_token(r["depth"]))
        assert r["tau"] == pytest.approx(laws.tau(r["tokens"], CAPACITY[r["depth"]]))
        assert r["tau_ci95"][0] < r["tau"] < r["tau_ci95"][1]
    assert [r["tau"] for r in rows] == sorted((r["tau"] for r in rows), reverse=True)
    path = tmp_path / "laws.json"
    path.write_text(json.dumps({**laws_json, "batch": [], "tokens_depth": 2}))
    main([str(path), "--scale-to", "llama3.1-8b", "--compute", "1e21", "--batch", "16"])
    out = capsys.readouterr().out
    assert "carried to the llama3.1-8b grid" in out and "batch 16: no batch-axis costs" in out
    assert "GPU-h" in out and out.count("depth ") >= 4
    # Nothing was measured on that grid: every row is flagged, and the interval says what it leaves out.
    rows = [ln for ln in out.splitlines() if ln.startswith("  depth ")]
    assert len(rows) == 4 and all("(extrapolated: transferred from" in ln for ln in rows), out
    assert "leaves out the error of the transfer assumption itself" in out


def test_every_transferred_budget_is_flagged_and_measured_ones_are_not(laws_json: dict) -> None:
    laws = Laws.from_json({**laws_json, "tokens_depth": 2})  # measured up to 1e6 tokens
    per_token = laws.flops_per_token(1)
    inside = tau_for_compute(laws, 1e5 * per_token, [1])[0]  # 1e5 tokens: within the measured budgets
    beyond = tau_for_compute(laws, 1e7 * per_token, [1])[0]
    assert (
        inside["extrapolated"] == ""
        and beyond["extrapolated"] == "extrapolated: 10x the largest measured budget"
    )
    grid = Grid(name="big", max_tokens=1e10, tokens_depth=4, capacity={1: 1e8, 2: 2e8, 4: 4e8},
                target_params=8e9, ttt_steps=1)  # fmt: skip
    moved = transfer(laws, grid)
    below_anchor = tau_for_compute(moved, 1e9 * moved.flops_per_token(4), [4])[0]  # 0.1x the grid's largest
    above_anchor = tau_for_compute(moved, 3e10 * moved.flops_per_token(4), [4])[0]
    for row in (below_anchor, above_anchor):
        assert row["extrapolated"].startswith(
            "extrapolated: transferred from a sweep measured up to 1e+06 tokens"
        )
    assert "x this grid's largest" not in below_anchor["extrapolated"]
    assert above_anchor["extrapolated"].endswith(", 3x this grid's largest budget")
    # the same flag on the other two questions
    assert all(r["extrapolated"] for r in tokens_for_tau(moved, 3.0, [1, 2, 4]))


def test_max_extrapolation_bounds_compute_answers_too(laws_json: dict, tmp_path, capsys) -> None:
    laws = Laws.from_json(laws_json)
    compute = 1e7 * laws.flops_per_token(1)  # depth 1: 1e7 tokens (10x), depth 2: 5.9x, depth 4: 3.3x
    assert [r["depth"] for r in tau_for_compute(laws, compute, [1, 2, 4], max_extrapolation=5)] == [4]
    assert [r["depth"] for r in best_for_budget(laws, compute, 1, [1, 2, 4], max_extrapolation=5)] == [4, 4]
    with pytest.raises(Unreachable, match=r"depth 1: needs 1e\+07 tokens, more than 2x .*depth 4"):
        tau_for_compute(laws, compute, [1, 2, 4], max_extrapolation=2)
    for batch in ([], BATCH):  # without and with batch-axis costs: both --compute paths refuse
        path = tmp_path / "laws.json"
        path.write_text(json.dumps({**laws_json, "batch": batch}))
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    str(path),
                    "--compute",
                    f"{compute:g}",
                    "--depths",
                    "1",
                    "2",
                    "4",
                    "--max-extrapolation",
                    "2",
                ]
            )
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert (
            err.startswith("[plan] unreachable: compute") and "--max-extrapolation" in err and "\n" not in err
        )


def test_a_speedup_outside_every_measured_one_is_warned_of(laws_json: dict, tmp_path, capsys) -> None:
    measured = [dict(r, shapes={k: {**v, "speedup": sp} for (k, v), sp in zip(r["shapes"].items(), sps, strict=True)})
                for r, sps in zip(BATCH, ([0.9, 0.7], [0.5, 0.6]), strict=True)]  # fmt: skip
    laws = Laws.from_json({**laws_json, "batch": measured})
    assert outside_measured(laws, 0.5) == "" and outside_measured(laws, 0.9) == ""
    assert outside_measured(laws, 1.37).startswith(
        "warning: predicted speed-up 1.37 lies above every measured speed-up (0.50 to 0.90, 4 measured)"
    )
    assert "below every measured" in outside_measured(laws, 0.2)
    assert outside_measured(Laws.from_json(laws_json), 1.37) == ""  # nothing measured: nothing to compare
    path = tmp_path / "laws.json"
    path.write_text(json.dumps({**laws_json, "batch": measured}))
    main([str(path), "--compute", "1e15", "--batch", "1", "--depths", "2"])  # predicts ~1.7 at batch 1
    out = capsys.readouterr().out
    top = best_for_budget(laws, 1e15, 1, [2])[0]
    assert top["speedup"] > 0.9 and top["outside_measured"]
    assert f"{top['outside_measured']} (depth 2, {top['shape']})" in out
