"""`python -m eval.laws.schedule_vllm BATCH_VLLM_DIR --config SPEC_JSON`: vLLM serving the batch-size schedule
that `python -m eval.plan ... --engine vllm` wrote, against every fixed k, on the prompts of an
eval.laws.batch_vllm run (its folder: one k<k>/ per k).

One vLLM worker (eval.vllm_backend.runner): the target alone, each fixed k of that run (the config's method and
draft folder, num_speculative_tokens = k, no schedule) and the schedule, each decoding every prompt at each
batch size, temperature 0. Every output must equal the target alone's (the schedule is lossless or the run
fails). Counts are vLLM's own spec-decode counters (drafts, drafted and accepted tokens: exact); speed-up =
tokens/s over the target alone's in this worker. Noise: each fixed k was also timed by the batch_vllm run
(same prompts and batch sizes, minutes apart); the largest |difference| between the two speed-ups of one
(k, batch) is the noise stated beside every ratio here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eval.laws.batch_vllm import ints
from eval.laws.schedule import FIELD, k_at

RECORDS = "schedule_vllm.json"


def job(
    target: str,
    prompts: list[list[int]],
    batch_sizes: list[int],
    max_new_tokens: int,
    config: dict[str, Any],
    fixed_ks: list[int],
) -> dict[str, Any]:
    """The worker job (eval/vllm_backend/worker.py's format): plain, k<k> for each fixed k, schedule."""
    fixed = {key: v for key, v in config.items() if key != FIELD}
    runs = [{"name": "plain", "speculative_config": None}]
    runs += [
        {"name": f"k{k}", "speculative_config": {**fixed, "num_speculative_tokens": k}} for k in fixed_ks
    ]
    runs.append({"name": "schedule", "speculative_config": config})
    return {"target": target, "dtype": "float32", "max_model_len": 512, "prompts": prompts,
            "batch_sizes": batch_sizes, "max_new_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0,
            "seed": 0, "runs": runs}  # fmt: skip


def rows(result: dict[str, Any], batch_sizes: list[int]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (run, batch size) with vLLM's exact counts and tokens/s; failures: a refused run or an
    output different from the target alone's."""
    runs, failures, out = result["runs"], [], []
    for name, run in runs.items():
        if "error" in run:
            failures.append(f"{name}: vLLM refused it: {run['error']} at {run['where']}")
    if failures:
        return out, failures
    for bs in batch_sizes:
        plain = runs["plain"]["by_bs"][str(bs)]
        plain_tps = plain["new_tokens"] / plain["seconds"]
        for name, run in runs.items():
            if name == "plain":
                continue
            m = run["by_bs"][str(bs)]
            if m["outputs"] != plain["outputs"]:
                bad = sum(a != b for a, b in zip(m["outputs"], plain["outputs"], strict=True))
                failures.append(f"{name}, batch {bs}: {bad} outputs differ from the target alone's (greedy)")
            c = m["counters"]
            out.append({"run": name, "batch_size": bs, "num_drafts": c.get("num_drafts", 0),
                        "num_draft_tokens": c.get("num_draft_tokens", 0),
                        "num_accepted_tokens": c.get("num_accepted_tokens", 0),
                        "tokens_per_s": m["new_tokens"] / m["seconds"], "baseline_tokens_per_s": plain_tps,
                        "speedup": m["new_tokens"] / m["seconds"] / plain_tps})  # fmt: skip
    return out, failures


def earlier_speedups(root: Path, ks: list[int]) -> dict[tuple[int, int], float]:
    """(k, batch) -> vLLM's speed-up in the batch_vllm run (its k<k>/vllm_compare.json)."""
    out = {}
    for k in ks:
        for r in json.loads((root / f"k{k}" / "vllm_compare.json").read_text())["rows"]:
            if r["engine"] == "vllm":
                out[k, r["batch_size"]] = r["spec_tokens_per_s"] / r["baseline_tokens_per_s"]
    return out


def summary(table: list[dict], schedule: list[list[int]], earlier: dict[tuple[int, int], float]) -> dict:
    """Per batch size: the schedule's k and speed-up, the best fixed k and its speed-up, their ratio; the noise."""
    diffs = [abs(r["speedup"] - earlier[int(r["run"][1:]), r["batch_size"]]) for r in table
             if r["run"] != "schedule" and (int(r["run"][1:]), r["batch_size"]) in earlier]  # fmt: skip
    per_batch = []
    for bs in sorted({r["batch_size"] for r in table}):
        mine = {r["run"]: r for r in table if r["batch_size"] == bs}
        fixed = {n: r for n, r in mine.items() if n != "schedule"}
        best = max(fixed, key=lambda n: fixed[n]["speedup"])
        s = mine["schedule"]
        per_batch.append({"batch_size": bs, "schedule_k": k_at(schedule, bs), "schedule_speedup": s["speedup"],
                          "best_fixed": best, "best_fixed_speedup": fixed[best]["speedup"],
                          "ratio": s["speedup"] / fixed[best]["speedup"],
                          "schedule_draft_tokens_per_draft": s["num_draft_tokens"] / max(s["num_drafts"], 1)})  # fmt: skip
    return {"per_batch": per_batch, "noise_max_abs_speedup_diff": max(diffs) if diffs else None,
            "noise_pairs": len(diffs)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from eval.vllm_backend.runner import run_vllm, vllm_python

    p = argparse.ArgumentParser(
        prog="python -m eval.laws.schedule_vllm", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("root", type=Path, help="an eval.laws.batch_vllm --out folder (its k<k>/ runs)")
    p.add_argument("--config", type=Path, required=True, help="the speculative config eval.plan wrote")
    p.add_argument("--batch-sizes", type=ints, help="default: the batch_vllm run's")
    args = p.parse_args(argv)
    config = json.loads(args.config.read_text())
    ks = sorted(int(d.name[1:]) for d in args.root.glob("k*") if (d / "vllm_compare.json").is_file())
    if FIELD not in config or not ks:
        raise SystemExit(f"[schedule_vllm] need {FIELD} in {args.config} and k<k>/ runs in {args.root}")
    ours = json.loads((args.root / f"k{ks[0]}" / "draftforge" / "results.json").read_text())
    cfg = ours["config"]
    batch_sizes = args.batch_sizes or list(cfg["batch_sizes"])
    first = cfg["batch_sizes"][0]
    with open(args.root / f"k{ks[0]}" / "draftforge" / "outputs.jsonl") as f:
        prompts = [r["prompt_token_ids"] for r in map(json.loads, f) if r["batch_size"] == first]
    target = str(Path(cfg["target"]["name_or_path"]).resolve())
    result = run_vllm(vllm_python(), job(target, prompts, batch_sizes, cfg["max_new_tokens"], config, ks))
    table, failures = rows(result, batch_sizes)
    if failures:
        raise SystemExit("[schedule_vllm] " + "; ".join(failures))
    summ = summary(table, config[FIELD], earlier_speedups(args.root, ks))
    records = {"config": config, "prompts": len(prompts), "max_new_tokens": cfg["max_new_tokens"], "rows": table,
               **summ, "patches": result.get("patches", [])}  # fmt: skip
    (args.root / RECORDS).write_text(json.dumps(records, indent=1) + "\n")
    print(
        f"{len(prompts)} prompts x {cfg['max_new_tokens']} new tokens, greedy; every output equals the target alone's"
    )
    print("run       batch  drafts  drafted  accepted  tokens/s  speed-up")
    for r in table:
        print(f"{r['run']:<9} {r['batch_size']:>5} {r['num_drafts']:>7} {r['num_draft_tokens']:>8} "
              f"{r['num_accepted_tokens']:>9} {r['tokens_per_s']:>9.1f} {r['speedup']:>9.3f}")  # fmt: skip
    noise = summ["noise_max_abs_speedup_diff"]
    for b in summ["per_batch"]:
        print(f"batch {b['batch_size']}: schedule k={b['schedule_k']} ({b['schedule_draft_tokens_per_draft']:.2f} "
              f"drafted per draft) speed-up {b['schedule_speedup']:.3f} vs best fixed {b['best_fixed']} "
              f"{b['best_fixed_speedup']:.3f}: ratio {b['ratio']:.3f}")  # fmt: skip
    print(f"noise: fixed-k speed-ups here vs the batch_vllm run, max |difference| {noise:.3f} over "
          f"{summ['noise_pairs']} (k, batch) pairs; wrote {args.root / RECORDS}")  # fmt: skip


if __name__ == "__main__":
    main()
