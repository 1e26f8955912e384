"""The batch-size axis from existing eval outputs: speed-up and the best tree size at each batch size.

With exact greedy verification tau does not depend on the batch (every row is verified in full); what
changes is the price of verifying s drafted tokens per row: a batch of B rows verifies B*(s+1) tokens per
target forward, which stays nearly free while the forward is memory-bound and grows linearly once it is
compute-bound, so the best tree size shrinks as B grows. This module reads that from the batch-axis records.

Under a budgeted serving policy (`python -m eval ... tree.batch_budget=N`: the batch's rows share N drafted
tokens per target forward, eval.budget) tau itself falls with B. Such runs are shown as their own shapes,
"<shape>@b<N>" (named from each run's own config), and never compete for the unbudgeted best shape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SHAPE_PREFIX = "t0/"
BUDGET_MARK = "@b"  # "tree@b16": the default tree under a shared budget of 16 drafted tokens per forward


def budgeted(shape: str, batch_budget: int | None) -> str:
    """The shape's name under a shared batch budget (unchanged without one, or when already marked)."""
    return shape if batch_budget is None or BUDGET_MARK in shape else f"{shape}{BUDGET_MARK}{batch_budget}"


def shapes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every greedy decoding shape measured at this point: chain, the default tree, tree-s<size>; a result
    that says it ran under a batch budget (its `batch_budget`) is named with BUDGET_MARK."""
    return {
        budgeted(k.removeprefix(SHAPE_PREFIX), v.get("batch_budget")): v
        for k, v in record["results"].items()
        if k.startswith(SHAPE_PREFIX)
    }


def tree_size(shape: str, default_budget: int = 24) -> int | None:
    shape = shape.partition(BUDGET_MARK)[0]
    if shape.startswith("tree-s"):
        return int(shape.removeprefix("tree-s"))
    return default_budget if shape == "tree" else None


def batch_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per batch size: baseline step cost, the best unbudgeted shape by measured speed-up, and every
    shape's (tau, speedup, draft_ms, verify_ms), which the planner's cost model reads."""
    rows = []
    for rec in sorted((r for r in records if r["axis"] == "batch"), key=lambda r: r["batch_size"]):
        measured = shapes(rec)
        ok = {k: v for k, v in measured.items() if v.get("speedup") is not None and BUDGET_MARK not in k}
        best = max(ok, key=lambda k: ok[k]["speedup"]) if ok else None
        base = next((v.get("baseline_step_ms") for v in measured.values() if v.get("baseline_step_ms")), None)
        rows.append({
            "batch_size": rec["batch_size"], "depth": rec["depth"], "baseline_step_ms": base,
            "best_shape": best, "best_speedup": ok[best]["speedup"] if best else None,
            "shapes": {k: {m: v.get(m) for m in ("tau", "speedup", "draft_ms", "verify_ms")}
                       for k, v in measured.items()},
        })  # fmt: skip
    return rows


def format_batch_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "batch axis: no records"
    names = sorted(
        {s for r in rows for s in r["shapes"]}, key=lambda s: (BUDGET_MARK in s, tree_size(s) or 0, s)
    )
    head = "batch  " + "".join(f"{n:>14}" for n in names) + "   best"
    lines = ["speed-up by decoding shape (temperature 0; tau in brackets; best among unbudgeted shapes;",
             f"<shape>{BUDGET_MARK}N: rows share N drafted tokens per target forward):", head, "-" * len(head)]  # fmt: skip
    for r in rows:
        cells = []
        for n in names:
            v = r["shapes"].get(n) or {}
            sp, tau = v.get("speedup"), v.get("tau")
            cells.append(
                f"{sp:.2f} ({tau:.2f})".rjust(14) if sp is not None and tau is not None else "-".rjust(14)
            )
        lines.append(f"{r['batch_size']:>5}  " + "".join(cells) + f"   {r['best_shape']}")
    return "\n".join(lines)


def rows_from_eval_dirs(named: dict[str, Path] | list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """The same table from plain eval runs (`python -m eval ... batch_sizes=[1,2,...,64]`), one per decoding
    shape: {"tree-s8": outputs/eval/s8, "chain": outputs/eval/chain, ...}. A run made with
    tree.batch_budget=N is named "<shape>@bN" from its own recorded config."""
    by_bs: dict[int, dict[str, Any]] = {}
    for shape, folder in named.items() if isinstance(named, dict) else named:
        data = json.loads((Path(folder) / "results.json").read_text())
        name = budgeted(shape, ((data.get("config") or {}).get("tree") or {}).get("batch_budget"))
        for bs, scopes in data["by_batch_size"].items():
            by_bs.setdefault(int(bs), {})[name] = scopes["all"]
    rows = []
    for bs in sorted(by_bs):
        rec = {"axis": "batch", "batch_size": bs, "depth": None,
               "results": {f"{SHAPE_PREFIX}{k}": v for k, v in by_bs[bs].items()}}  # fmt: skip
        rows += batch_table([rec])
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.laws.batch", description=main.__doc__)
    p.add_argument(
        "runs",
        nargs="+",
        help="SHAPE=EVAL_DIR, e.g. tree-s8=outputs/eval/s8 chain=outputs/eval/c tree=outputs/eval/budget16",
    )
    args = p.parse_args(argv)
    # A list, not a dict: "tree=<free run> tree=<budgeted run>" is two shapes once the budget names them.
    named = [(k, Path(v)) for k, v in (r.split("=", 1) for r in args.runs)]
    print(format_batch_table(rows_from_eval_dirs(named)))


main.__doc__ = "Speed-up and the best decoding shape per batch size from eval runs over batch_sizes."

if __name__ == "__main__":
    main()
