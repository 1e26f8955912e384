"""Recipe vs budget (launch/recipes_vs_budget.sh): does a recipe's lead grow with its training tokens?

    python -m eval.laws.recipes regenerate [pipeline overrides]   # the target's answers, at the full size
    python -m eval.laws.recipes table outputs/recipes-vs-budget    # table.{csv,md} + tau_vs_budget.png

`regenerate` makes the tiny recipes' shared regenerated answers at budget scale 1 before any scaled run:
every budget then trains on the same pool of answers (a scaled run would otherwise make a smaller pool, and
the pool's size, not only the budget, would change between budgets). `table` reads each budget's
`eval.compare` table (<root>/s<scale>/compare.csv) and writes tau per recipe per total target-token budget.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from data.paths import CONF_DIR, register_resolvers
from data.typed import to_typed
from eval.intervals import fmt_interval
from train.pipeline import PipelineConfig, PrepareStep

FULL_BUDGET = (
    600_000  # every tiny recipe's total target tokens at budget scale 1 (conf/experiment/base/tiny.yaml)
)


def regenerate_step(overrides: list[str]) -> PrepareStep:
    """The tiny recipes' regeneration step as a budget-scale-1 pipeline composes it (whatever
    DRAFTFORGE_BUDGET_SCALE says)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose("pipeline", overrides=["experiment=eagle3-tiny", *overrides, "budget_scale=1.0"])
    step = to_typed(PipelineConfig, raw, "pipeline config").regenerate_step
    assert step is not None, "the tiny recipes define regenerate_step (conf/experiment/base/tiny.yaml)"
    return step


def regenerate(overrides: list[str]) -> None:
    """Run the full-size regeneration step unless its file exists."""
    step = regenerate_step(overrides)
    if Path(step.creates).exists():
        print(f"[recipes] {step.creates} exists, skipping", flush=True)
        return
    subprocess.run([sys.executable, *step.command], check=True)


def read_budgets(root: Path) -> dict[float, dict[str, dict[str, str]]]:
    """{budget scale: {recipe: its compare.csv row}} for every finished budget under root."""
    out: dict[float, dict[str, dict[str, str]]] = {}
    for table in sorted(root.glob("s*/compare.csv")):
        with open(table, newline="") as f:
            out[float(table.parent.name[1:])] = {row["recipe"]: row for row in csv.DictReader(f)}
    return dict(sorted(out.items()))


CI = " ci95"  # compare.csv's interval column beside a number's: "tau@T=0 ci95" = "[lo, hi]"


def table_rows(budgets: dict[float, dict[str, dict[str, str]]], column: str) -> list[dict[str, object]]:
    """One row per recipe: tau (`column` of compare.csv) at each total budget, in target tokens, and beside it
    (key "<tokens> ci95") its 95 % interval where compare.csv has one (tables made before intervals: None)."""
    recipes = list(dict.fromkeys(r for rows in budgets.values() for r in rows))
    rows = []
    for recipe in recipes:
        row: dict[str, object] = {"recipe": recipe}
        for scale, by_recipe in budgets.items():
            found = by_recipe.get(recipe, {})
            cell, ci = found.get(column), found.get(column + CI)
            tokens = str(round(FULL_BUDGET * scale))
            row[tokens] = float(cell) if cell not in (None, "") else None
            row[tokens + CI] = json.loads(ci) if ci not in (None, "", "None") else None
        rows.append(row)
    return rows


def write_table(root: Path, column: str) -> list[str]:
    budgets = read_budgets(root)
    if not budgets:
        raise SystemExit(f"{root}: no s<scale>/compare.csv (run launch/recipes_vs_budget.sh first)")
    rows = table_rows(budgets, column)
    tokens = [k for k in rows[0] if k != "recipe" and not k.endswith(CI)]
    lines = [f"{column} [95 % interval] by total target tokens of training (600k = the full tiny recipes)",
             "| recipe | " + " | ".join(f"{int(t):,}" for t in tokens) + " |",
             "|---" * (len(tokens) + 1) + "|"]  # fmt: skip
    for row in rows:
        cells = ["-" if row[t] is None else f"{row[t]:.3f}" + (f" {fmt_interval(c, 3)}" if (c := row[t + CI]) else "")
                 for t in tokens]  # fmt: skip
        lines.append(f"| {row['recipe']} | " + " | ".join(cells) + " |")
    with open(root / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "table.md").write_text("\n".join(lines) + "\n")
    plot(rows, tokens, column, root / "tau_vs_budget.png")
    lines.append(f"wrote {root / 'table.csv'}, {root / 'table.md'} and {root / 'tau_vs_budget.png'}")
    return lines


def plot(rows: list[dict[str, object]], tokens: list[str], column: str, path: Path) -> None:
    fig = Figure(figsize=(6.4, 4.4), dpi=100)  # Figure + Agg: no pyplot global state
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for row in rows:
        pts = [(int(t), row[t]) for t in tokens if row[t] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=str(row["recipe"]))
    ax.set_xscale("log")
    ax.set_xlabel("total target tokens of training (all stages)")
    ax.set_ylabel(f"tau ({column}; bonus token counted)")
    ax.set_title("Recipe vs budget, tiny default, same prompts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.laws.recipes", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("regenerate", help="the shared regenerated answers at budget scale 1")
    r.add_argument("overrides", nargs="*", help="pipeline overrides, e.g. target=tiny-qwen2")
    t = sub.add_parser("table", help="tau per recipe and budget from each budget's compare.csv")
    t.add_argument("root", type=Path)
    t.add_argument("--column", default="tau@T=0", help="the compare.csv column tabled")
    args = p.parse_args(argv)
    if args.command == "regenerate":
        regenerate(args.overrides)
    else:
        print("\n".join(write_table(args.root, args.column)))


if __name__ == "__main__":
    main()
