"""The batch-size axis from existing eval outputs: speed-up and the best tree size at each batch size.

With exact greedy verification tau does not depend on the batch (every row is verified in full); what
changes is the price of verifying s drafted tokens per row: a batch of B rows verifies B*(s+1) tokens per
target forward, which stays nearly free while the forward is memory-bound and grows linearly once it is
compute-bound, so the best tree shrinks as B grows. This module reads that from the batch-axis records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SHAPE_PREFIX = "t0/"


def shapes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every greedy decoding shape measured at this point: chain, the default tree, tree-s<size>."""
    return {
        k.removeprefix(SHAPE_PREFIX): v for k, v in record["results"].items() if k.startswith(SHAPE_PREFIX)
    }


def tree_size(shape: str, default_budget: int = 24) -> int | None:
    if shape.startswith("tree-s"):
        return int(shape.removeprefix("tree-s"))
    return default_budget if shape == "tree" else None


def batch_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per batch size: baseline step cost, the best shape by measured speed-up, and every shape's
    (tau, speedup, draft_ms, verify_ms), which the planner's cost model reads."""
    rows = []
    for rec in sorted((r for r in records if r["axis"] == "batch"), key=lambda r: r["batch_size"]):
        measured = shapes(rec)
        ok = {k: v for k, v in measured.items() if v.get("speedup") is not None}
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
    names = sorted({s for r in rows for s in r["shapes"]}, key=lambda s: (tree_size(s) or 0, s))
    head = "batch  " + "".join(f"{n:>14}" for n in names) + "   best"
    lines = ["speed-up by decoding shape (temperature 0; tau in brackets):", head, "-" * len(head)]
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


def rows_from_eval_dirs(named: dict[str, Path]) -> list[dict[str, Any]]:
    """The same table from plain eval runs (`python -m eval ... batch_sizes=[1,2,...,64]`), one per decoding
    shape: {"tree-s8": outputs/eval/s8, "chain": outputs/eval/chain, ...}."""
    by_bs: dict[int, dict[str, Any]] = {}
    for shape, folder in named.items():
        data = json.loads((Path(folder) / "results.json").read_text())
        for bs, scopes in data["by_batch_size"].items():
            by_bs.setdefault(int(bs), {})[shape] = scopes["all"]
    rows = []
    for bs in sorted(by_bs):
        rec = {"axis": "batch", "batch_size": bs, "depth": None,
               "results": {f"{SHAPE_PREFIX}{k}": v for k, v in by_bs[bs].items()}}  # fmt: skip
        rows += batch_table([rec])
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.laws.batch", description=main.__doc__)
    p.add_argument(
        "runs", nargs="+", help="SHAPE=EVAL_DIR, e.g. tree-s8=outputs/eval/s8 chain=outputs/eval/c"
    )
    args = p.parse_args(argv)
    named = dict(r.split("=", 1) for r in args.runs)
    print(format_batch_table(rows_from_eval_dirs({k: Path(v) for k, v in named.items()})))


main.__doc__ = "Speed-up and the best decoding shape per batch size from eval runs over batch_sizes."

if __name__ == "__main__":
    main()
