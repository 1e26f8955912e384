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


def _compare(root: Path, scale: float, taus: dict[str, float]) -> None:
    out = root / f"s{scale:g}"
    out.mkdir(parents=True)
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["recipe", "tokens", "tau@T=0", "speedup@T=0"])
        w.writeheader()
        for recipe, tau in taus.items():
            w.writerow({"recipe": recipe, "tokens": "sft 1", "tau@T=0": tau, "speedup@T=0": 1.0})


def test_regeneration_is_full_size_at_any_budget_scale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRAFTFORGE_BUDGET_SCALE", "0.01")
    step = regenerate_step([f"regenerated={tmp_path / 'answers.jsonl'}"])
    limit = step.command[step.command.index("--limit") + 1]
    assert int(limit) == 968 and step.creates == str(tmp_path / "answers.jsonl")


def test_table_has_tau_per_recipe_per_budget(tmp_path: Path) -> None:
    _compare(tmp_path, 0.25, {"scylla": 2.5, "eagle3": 2.4})
    _compare(tmp_path, 0.03125, {"scylla": 1.4, "eagle3": 1.5})
    _compare(tmp_path, 0.125, {"scylla": 2.1})  # a budget where a recipe is missing shows a gap
    assert list(read_budgets(tmp_path)) == [0.03125, 0.125, 0.25]
    lines = write_table(tmp_path, "tau@T=0")
    with open(tmp_path / "table.csv", newline="") as f:
        rows = {r["recipe"]: r for r in csv.DictReader(f)}
    budgets = [str(round(FULL_BUDGET * s)) for s in (0.03125, 0.125, 0.25)]
    assert [float(rows["scylla"][b]) for b in budgets] == [1.4, 2.1, 2.5]
    assert rows["eagle3"][budgets[1]] == ""
    assert "| eagle3 | 1.500 | - | 2.400 |" in lines
    assert (tmp_path / "tau_vs_budget.png").stat().st_size > 0


def test_the_script_runs_the_four_recipes_over_an_8x_span() -> None:
    text = SCRIPT.read_text()
    assert 'RECIPES="${RECIPES:-scylla scylla1 eagle3 eagle2}"' in text
    scales = [float(s) for s in text.split('SCALES="${SCALES:-')[1].split("}")[0].split()]
    assert len(scales) == 3 and max(scales) / min(scales) >= 8
