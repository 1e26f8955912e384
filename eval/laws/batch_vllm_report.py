"""From the per-k vLLM comparisons (eval.laws.batch_vllm) to the batch law as each engine sees it.

Speed-up at (batch B, draft length k) = speculative tokens/s / target-alone tokens/s of the same engine,
same prompts, same batch size (vLLM's: generate() wall time, prefill included; ours: decoding only). The best
k per batch size is the one with the highest speed-up; its speed-up against ln(B) is fitted like the
existing batch law (eval.laws.fit: every form, best by leave-one-out error), and so is each k's.

Records (batch_vllm.json): every (engine, B, k) row, the best k, the fits, and "batch": vLLM's rows in the
form the planner reads (eval.laws.batch.batch_table's rows, shapes "chain-k<k>"). vLLM reports wall time
only, so a step's cost is split by attribution, not measurement: verify_ms = the target-alone step (the
target's forward over the batch) and draft_ms = what a speculative step costs beyond it (the draft's k
forwards and verifying k more tokens per row). The planner scales draft_ms with the draft's parameters, so
for other depths this overstates how much a draft's size moves the cost; at the measured depth it returns
the measured speed-up exactly. "tree" carries our engine's default-tree tau only (no cost, never a
candidate): the planner's law is fitted on that tau and scales it by tau_chain-k / tau_tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from eval.laws.batch import format_batch_table
from eval.laws.fit import Fit, best_form, compare_forms
from eval.laws.plots import plot_batch, plot_fit

JOB_FILE = "batch_vllm_job.json"
RECORDS = "batch_vllm.json"
ENGINES = ("vllm", "draftforge")
# Where vLLM 0.32 stands on tree drafting (checked in its source; docs/serving.md's vLLM section cites the same).
VLLM_TREE_NOTE = (
    "vLLM 0.32.0 has no tree drafting on any device: SpeculativeConfig (vllm/config/speculative.py:387) has no "
    "speculative_token_tree field and forbids unknown ones (vllm/config/utils.py:71, pydantic "
    "'Unexpected keyword argument'), vllm/v1/attention/backends/ has no tree-attention backend (cpu_attn.py "
    "serves CPU), and the only trace left is a FIXME (vllm/v1/spec_decode/llm_base_proposer.py:1625); "
    "EAGLE-3/Scylla drafts are served as chains of num_speculative_tokens"
)


def shape(k: int) -> str:
    return f"chain-k{k}"


def read_runs(root: Path, ks: list[int]) -> dict[int, dict[str, Any]]:
    return {k: json.loads((root / f"k{k}" / "vllm_compare.json").read_text()) for k in ks}


def speed_rows(runs: dict[int, dict[str, Any]], batch_sizes: list[int]) -> list[dict[str, Any]]:
    """One row per (engine, batch size, k); incomplete runs are an error, named, never a gap."""
    rows = []
    for k, run in runs.items():
        if run["failures"]:
            raise ValueError(f"k={k}: the vLLM comparison failed: {run['failures'][:3]}")
        have = {(r["engine"], r["batch_size"]): r for r in run["rows"]}
        for engine in ENGINES:
            for bs in batch_sizes:
                r = have.get((engine, bs))
                if r is None or not r.get("spec_tokens_per_s") or not r.get("baseline_tokens_per_s"):
                    raise ValueError(f"k={k}: no {engine} tokens/s at batch {bs} in its vllm_compare.json")
                rows.append({"engine": engine, "batch_size": bs, "k": k, "tau": r["mean_accepted_length"],
                             **{f"acceptance_at_{i + 1}": r[f"acceptance_at_{i + 1}"] for i in range(k)},
                             "spec_tokens_per_s": r["spec_tokens_per_s"],
                             "baseline_tokens_per_s": r["baseline_tokens_per_s"],
                             "speedup": r["spec_tokens_per_s"] / r["baseline_tokens_per_s"]})  # fmt: skip
    return rows


def shape_rows(
    rows: list[dict[str, Any]], engine: str, depth: int | None, tree_tau: float | None
) -> list[dict]:
    """eval.laws.batch.batch_table's row form for one engine: the planner's `batch` and the table's input."""
    out = []
    for bs in sorted({r["batch_size"] for r in rows}):
        mine = [r for r in rows if r["engine"] == engine and r["batch_size"] == bs]
        # The target alone was timed once per k (beside that k's speculative run): one step = one token per row.
        base_ms = float(np.mean([bs * 1e3 / r["baseline_tokens_per_s"] for r in mine]))
        shapes: dict[str, dict[str, Any]] = {}
        for r in mine:
            # A speculative step emits tau tokens per row; in units of the common baseline its cost is
            # tau * base / speed-up, so the planner's tau * base / (draft + verify) returns the measured speed-up.
            cost_ms = r["tau"] * base_ms / r["speedup"]
            # max(0, .): a step timed faster than the target alone (noise) must not give a negative draft cost.
            shapes[shape(r["k"])] = {"tau": r["tau"], "speedup": r["speedup"],
                                     "step_ms": bs * r["tau"] * 1e3 / r["spec_tokens_per_s"],
                                     "verify_ms": base_ms, "draft_ms": max(cost_ms - base_ms, 0.0)}  # fmt: skip
        if tree_tau is not None:
            shapes["tree"] = {"tau": tree_tau, "speedup": None, "draft_ms": None, "verify_ms": None}
        best = max(
            (s for s in shapes if shapes[s]["speedup"] is not None), key=lambda s: shapes[s]["speedup"]
        )
        out.append({"batch_size": bs, "depth": depth, "baseline_step_ms": base_ms, "best_shape": best,
                    "best_speedup": shapes[best]["speedup"], "shapes": shapes})  # fmt: skip
    return out


def fit_engine(table: list[dict[str, Any]], ks: list[int], n_boot: int) -> tuple[dict[str, Any], Fit | None]:
    """Speed-up vs ln(B): the best k's (the envelope) and each k's, every form, best by leave-one-out."""
    series = {"best_k": [(r["batch_size"], r["best_speedup"]) for r in table]}
    series |= {shape(k): [(r["batch_size"], r["shapes"][shape(k)]["speedup"]) for r in table] for k in ks}
    out: dict[str, Any] = {}
    envelope = None
    for name, pts in series.items():
        x, y = np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)
        if len(x) < 3:
            out[name] = {"skipped": f"{len(x)} batch sizes (need >= 3)"}
            continue
        forms = compare_forms(x, y, n_boot)
        best = best_form(forms)
        out[name] = {"best": best, "forms": {n: f.to_json() for n, f in forms.items()}}
        if name == "best_k":
            envelope = forms[best]
    return out, envelope


def fit_lines(engine: str, fits: dict[str, Any]) -> list[str]:
    lines = []
    for name, entry in fits.items():
        if "skipped" in entry:
            lines.append(f"  {engine} {name}: fit skipped ({entry['skipped']})")
            continue
        b = entry["forms"][entry["best"]]
        ll = entry["forms"].get("log_linear")
        line = f"  {engine} {name}: best {entry['best']} {b['formula']} R^2={b['r2']:.3f}"
        if ll:
            (a, b_), ci = ll["params"].values(), ll["ci95"]["b"]
            line += f"; log-linear speed-up = {a:.3f} {b_:+.4f} ln B (b [{ci[0]:.4f}, {ci[1]:.4f}]) R^2={ll['r2']:.3f}"
        lines.append(line)
    return lines


def report(
    root: Path, ks: list[int], batch_sizes: list[int], laws: Path | None = None, n_boot: int = 1000
) -> dict:
    runs = read_runs(root, ks)
    rows = speed_rows(runs, batch_sizes)
    first = runs[ks[0]]
    export_cfg = json.loads((Path(first["draft"]) / "config.json").read_text())
    depth = export_cfg["head"].get("num_layers")
    anchor = json.loads((root / "tree-anchor" / "results.json").read_text())
    tree_tau = anchor["by_batch_size"]["1"]["all"]["tau"]
    tables = {e: shape_rows(rows, e, depth, tree_tau if e == "vllm" else None) for e in ENGINES}
    fits, envelopes, lines = {}, {}, []
    for engine, table in tables.items():
        fits[engine], envelopes[engine] = fit_engine(table, ks, n_boot)
        lines += [f"{engine}:", format_batch_table(table), *fit_lines(engine, fits[engine])]
    best_k = {e: {str(r["batch_size"]): int(r["best_shape"].removeprefix("chain-k")) for r in t}
              for e, t in tables.items()}  # fmt: skip
    lines.append("best k per batch size: " + "; ".join(f"{e} {best_k[e]}" for e in ENGINES))
    lines.append(
        f"tree anchor: our engine's default tree, batch 1, tau {tree_tau:.3f} (the planner scales by it)"
    )
    records = {
        "draft": first["draft"], "served": first["served"], "method": first["method"], "depth": depth,
        "ks": ks, "batch_sizes": batch_sizes,
        "settings": json.loads((root / f"k{ks[0]}" / JOB_FILE).read_text())["overrides"],
        "speedup": "spec tokens/s / target-alone tokens/s, same engine, prompts and batch size",
        "tokens_per_s_note": first["tokens_per_s_note"], "check": first["check"], "vllm_tree": VLLM_TREE_NOTE,
        "tree_anchor_tau": tree_tau, "rows": rows, "best_k": best_k, "fits": fits, "batch": tables["vllm"],
        "batch_draftforge": tables["draftforge"], "vllm_build_s": {k: r["vllm_build_s"] for k, r in runs.items()},
    }  # fmt: skip
    (root / RECORDS).write_text(json.dumps(records, indent=1) + "\n")
    pngs = write_plots(root, tables, envelopes)
    if laws is not None:
        data = json.loads(Path(laws).read_text())
        data["batch"], data["batch_source"] = tables["vllm"], f"vLLM, {root / RECORDS}"
        (root / "laws.json").write_text(json.dumps(data, indent=1) + "\n")
        lines.append(
            f"wrote {root / 'laws.json'}: {laws} with vLLM's batch costs (python -m eval.plan reads it)"
        )
    print("\n".join([*lines, f"wrote {root / RECORDS}, {', '.join(map(str, pngs))}"]), flush=True)
    return records


def write_plots(root: Path, tables: dict[str, list[dict]], envelopes: dict[str, Fit | None]) -> list[Path]:
    both = [{"batch_size": r["batch_size"], "shapes": {f"{e} {s}": v for e in ENGINES for s, v in
             next(t for t in tables[e] if t["batch_size"] == r["batch_size"])["shapes"].items()}}
            for r in tables["vllm"]]  # fmt: skip
    paths = [plot_batch(both, root / "batch_vllm_shapes.png")]
    for engine, fit in envelopes.items():
        if fit is not None:
            paths.append(plot_fit(fit, root / f"batch_vllm_law_{engine}.png", "decoding batch size B",
                                  "speed-up at the best k", f"{engine}: best-k speed-up vs batch ({fit.form})"))  # fmt: skip
    return paths
