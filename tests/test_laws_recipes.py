"""Recipe vs budget (launch/recipes_vs_budget.sh): the shared regenerated answers are made at full size
whatever the budget scale, and each budget's eval.compare table becomes one tau-per-recipe-per-budget table
and plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data.paths import REPO_ROOT
from eval.laws.recipes import FULL_BUDGET, read_budgets, regenerate_step, write_table

SCRIPT = REPO_ROOT / "launch" / "recipes_vs_budget.sh"


def _compare(
    root: Path, scale: float, taus: dict[str, float], cis: dict[str, list[float]] | None = None
) -> None:
    """A compare.csv as eval.compare writes it; `cis` adds its interval column (older tables lack it)."""
    out = root / f"s{scale:g}"
    out.mkdir(parents=True)
    with open(out / "compare.csv", "w", newline="") as f:
        names = ["recipe", "tokens", "tau@T=0", *(["tau@T=0 ci95"] if cis else []), "speedup@T=0"]
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for recipe, tau in taus.items():
            row = {"recipe": recipe, "tokens": "sft 1", "tau@T=0": tau, "speedup@T=0": 1.0}
            w.writerow({**row, **({"tau@T=0 ci95": cis[recipe]} if cis else {})})


def test_regeneration_is_full_size_at_any_budget_scale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRAFTFORGE_BUDGET_SCALE", "0.01")
    step = regenerate_step([f"regenerated={tmp_path / 'answers.jsonl'}"])
    limit = step.command[step.command.index("--limit") + 1]
    assert int(limit) == 968 and step.creates == str(tmp_path / "answers.jsonl")


def test_table_has_tau_per_recipe_per_budget(tmp_path: Path) -> None:
    _compare(tmp_path, 0.25, {"scylla": 2.5, "eagle3": 2.4}, {"scylla": [2.31, 2.66], "eagle3": [2.2, 2.58]})
    _compare(tmp_path, 0.03125, {"scylla": 1.4, "eagle3": 1.5})
    _compare(tmp_path, 0.125, {"scylla": 2.1})  # a budget where a recipe is missing shows a gap
    assert list(read_budgets(tmp_path)) == [0.03125, 0.125, 0.25]
    lines = write_table(tmp_path, "tau@T=0")
    with open(tmp_path / "table.csv", newline="") as f:
        rows = {r["recipe"]: r for r in csv.DictReader(f)}
    budgets = [str(round(FULL_BUDGET * s)) for s in (0.03125, 0.125, 0.25)]
    assert [float(rows["scylla"][b]) for b in budgets] == [1.4, 2.1, 2.5]
    assert rows["eagle3"][budgets[1]] == ""
    assert "| eagle3 | 1.500 | - | 2.400 [2.2, 2.58] |" in lines  # the interval where compare.csv has one
    assert (tmp_path / "tau_vs_budget.png").stat().st_size > 0


def test_the_script_runs_the_four_recipes_over_an_8x_span() -> None:
    text = SCRIPT.read_text()
    assert 'RECIPES="${RECIPES:-scylla scylla1 eagle3 eagle2}"' in text
    scales = [float(s) for s in text.split('SCALES="${SCALES:-')[1].split("}")[0].split()]
    assert len(scales) == 3 and max(scales) / min(scales) >= 8


def test_compare_pools_seeds_with_a_two_stage_interval(tmp_path: Path) -> None:
    """eval.compare NAME=A,B: tau over both seeds' prompts is the ratio of totals, its interval resamples seeds
    then prompts (wider than either seed's own when the seeds disagree); speed-up is the seeds' mean with a
    t-interval. One seed: the eval's own intervals, unchanged."""
    from eval.compare import pooled, prompt_units
    from eval.run import EvalResult

    def run(emitted: list[list[int]], speedup: float) -> EvalResult:
        records = [{"batch_size": 1, "emitted": e} for e in emitted]
        tokens, steps = sum(map(sum, emitted)), sum(map(len, emitted))
        m = {"tau": tokens / steps, "tau_ci95": [1.0, 2.0], "speedup": speedup, "speedup_ci95": [0.5, 0.9]}
        return EvalResult({"all": m}, {1: {"all": m}}, tmp_path, {}, records)

    low = run([[1, 2, 1, 1]] * 10, 0.6)  # tau 1.25
    high = run([[3, 3, 2]] * 10, 0.8)  # tau 2.67
    assert prompt_units(low.records, 1).tolist() == [[5, 4]] * 10
    both = pooled([low, high])
    assert both["tau"] == pytest.approx((50 + 80) / (40 + 30))
    assert both["tau_ci95"][0] < 1.5 and both["tau_ci95"][1] > 2.4
    assert both["speedup"] == pytest.approx(0.7)
    assert both["speedup_ci95"][0] < 0.6 and both["speedup_ci95"][1] > 0.8
    assert pooled([low])["tau_ci95"] == [1.0, 2.0]
