"""`python -m eval engine=vllm draft_path=<our export or an engine-format folder>`: the same prompts decoded
by our chain engine and by vLLM (target alone and with the draft), side by side in vllm_compare.{json,csv,png}.

Our export is first written in the layout vLLM loads (the algorithm's spec names it, with vLLM's speculative
method: `SPEC.serve["vllm"]`) with our own exporter, so vLLM serves exactly what a user would ship.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.config import EvalConfig
from eval.run import evaluate
from eval.vllm_backend import compare
from eval.vllm_backend.runner import run_vllm, vllm_python
from train.drafts.registry import spec_for, spec_of_format
from train.drafts.spec import DraftSpec
from train.export import detect, export_draft, import_draft, read_json

ENGINE = "vllm"  # the key of each algorithm's `serve` entry (train/drafts/spec.py)


class VllmMismatch(RuntimeError):
    """vLLM and our engine disagree (greedy outputs or counts, or sampled acceptance beyond tolerance)."""


def prepare(draft_path: str, target_path: str, out: Path) -> tuple[str, str, str]:
    """(our export, vLLM's folder, vLLM method) for a draft given in either layout."""
    cfg = read_json(Path(draft_path) / "config.json")
    if "format" in cfg and "head" in cfg:  # one of our exports
        fmt, method = served_as(spec_for(cfg["head"]["architecture"]), draft_path)
        served = export_draft(Path(draft_path), fmt, out / f"vllm-{fmt}", target_path)
        return draft_path, str(served), method
    fmt_mod = detect(Path(draft_path))
    fmt, method = served_as(spec_of_format(fmt_mod.NAME), draft_path)
    if fmt_mod.NAME != fmt:
        # vLLM would load the folder but may read it differently from how it was trained (an SGLang-layout
        # EAGLE-3 folder: vLLM reads its layer ids without SGLang's +1): refused, not served.
        why = getattr(fmt_mod, "VLLM_READS_IT_WRONG", "vLLM may read it differently from how it was trained")
        raise VllmMismatch(f"{draft_path}: {fmt_mod.NAME} folder: {why}; vLLM serves this algorithm from the "
                           f"{fmt} format: export with --format {fmt}")  # fmt: skip
    ours = import_draft(Path(draft_path), out / "imported", fmt_mod.NAME, target_path)
    return str(ours), draft_path, method


def served_as(spec: DraftSpec, draft_path: str) -> tuple[str, str]:
    """(format, vLLM method) from the algorithm's spec."""
    if ENGINE not in spec.serve:
        raise VllmMismatch(f"{draft_path}: draft={spec.name} declares no {ENGINE} format (SPEC.serve)")
    return spec.serve[ENGINE]


def evaluate_vllm(cfg: EvalConfig) -> dict[str, Any]:
    python = vllm_python(cfg.vllm.python)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target_path = str(Path(cfg.target.name_or_path).resolve())
    ours_path, served, method = prepare(cfg.draft_path, target_path, out)
    k = cfg.draft_length
    # method plus the algorithm's further switches (P-EAGLE: parallel_drafting), from its spec
    spec_cfg = spec_for(
        read_json(Path(ours_path) / "config.json")["head"]["architecture"]
    ).speculative_config(ENGINE, served, k)
    ours_cfg = dataclasses.replace(
        cfg, mode="chain", draft_path=ours_path, output_dir=str(out / "draftforge")
    )
    result = evaluate(ours_cfg)  # raises LosslessError itself if our engine is not lossless
    by_bs: dict[int, list[dict]] = {bs: [] for bs in cfg.batch_sizes}
    for rec in result.records:
        by_bs[rec["batch_size"]].append(rec)
    first = by_bs[cfg.batch_sizes[0]]
    job = {
        "target": target_path, "dtype": "float32", "max_model_len": cfg.vllm.max_model_len,
        "prompts": [r["prompt_token_ids"] for r in first], "batch_sizes": cfg.batch_sizes,
        "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
        "seed": cfg.seed,
        "runs": [{"name": "plain", "speculative_config": None},
                 {"name": "spec", "speculative_config": spec_cfg}],
    }  # fmt: skip
    if cfg.temperature > 0:
        # vLLM's default proposes the draft's argmax (accepted with probability p_target); our engine, like
        # the speculative-sampling papers, samples the draft and accepts with min(1, p/q). Same method here.
        job["runs"][1]["speculative_config"]["draft_sample_method"] = "probabilistic"
    vllm = run_vllm(python, job, cfg.vllm.timeout_s)
    for name, run in vllm["runs"].items():
        if "error" in run:
            raise VllmMismatch(f"vLLM refused the {name} run ({method}): {run['error']} at {run['where']}")
    ids = [r["id"] for r in first]
    checks = compare.Checks()
    our_cnt = {bs: compare.our_counts([r["accepted_lengths"] for r in recs], k) for bs, recs in by_bs.items()}
    if cfg.temperature == 0.0:
        compare.check_greedy(ids, by_bs, vllm["runs"], k, checks)
    else:
        plain, spec = vllm["runs"]["plain"]["by_bs"], vllm["runs"]["spec"]["by_bs"]
        for bs in cfg.batch_sizes:
            compare.check_sampling(our_cnt[bs], spec[str(bs)]["counters"], bs, checks)
            compare.check_sampled_outputs(
                {f"batch {bs}, vLLM speculative vs vLLM plain": (spec[str(bs)]["outputs"], plain[str(bs)]["outputs"]),
                 f"batch {bs}, ours vs vLLM plain": ([r["output_token_ids"] for r in by_bs[bs]],
                                                     plain[str(bs)]["outputs"])},
                cfg.max_new_tokens, checks,
            )  # fmt: skip
    table = compare.rows(
        {bs: result.by_batch_size[bs]["all"] for bs in cfg.batch_sizes}, our_cnt, vllm["runs"], k
    )
    report = {
        "draft": cfg.draft_path, "served": served, "method": method, "num_speculative_tokens": k,
        "temperature": cfg.temperature, "prompts": ids, "rows": table, "failures": checks.failures,
        "notes": checks.notes, "check": "greedy: outputs and counters equal" if cfg.temperature == 0.0
        else f"sampling: per-position acceptance and stops per new token, two-proportion |z| <= {compare.Z_MAX}; "
        f"each position must be able to detect an acceptance difference of {compare.MIN_EFFECT}",
        "vllm_patches": vllm.get("patches", []),
        "tokens_per_s_note": "draftforge excludes the prefill; vLLM's is generate() wall time, prefill included",
        "vllm_build_s": {n: r.get("build_s") for n, r in vllm["runs"].items()},
    }  # fmt: skip
    write_report(out, report, k)
    if checks.failures:
        raise VllmMismatch(
            f"vLLM and our engine disagree ({len(checks.failures)}): " + "; ".join(checks.failures[:5])
        )
    return report


def write_report(out: Path, report: dict[str, Any], k: int) -> None:
    (out / "vllm_compare.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = report["rows"]
    with open(out / "vllm_compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cols = ["engine", "batch_size", "mean_accepted_length", *[f"acceptance_at_{i + 1}" for i in range(k)],
            "spec_tokens_per_s", "baseline_tokens_per_s"]  # fmt: skip
    lines = [" | ".join(cols)] + [
        " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) for r in rows
    ]
    print("\n".join(lines) + f"\ncheck: {report['check']}; failures: {len(report['failures'])}", flush=True)
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_speed, ax_tau = fig.subplots(1, 2)
    for engine in ("draftforge", "vllm"):
        mine = [r for r in rows if r["engine"] == engine]
        bss = [r["batch_size"] for r in mine]
        ax_speed.plot(bss, [r["spec_tokens_per_s"] for r in mine], "o-", label=f"{engine} speculative")
        ax_speed.plot(bss, [r["baseline_tokens_per_s"] for r in mine], "x--", label=f"{engine} target alone")
        ax_tau.plot(bss, [r["mean_accepted_length"] or 0 for r in mine], "o-", label=engine)
    ax_speed.set(xscale="log", xlabel="batch size", ylabel="new tokens/s", title="throughput")
    ax_tau.set(xscale="log", xlabel="batch size", ylabel="1 + accepted/drafts", title="mean accepted length")
    ax_speed.legend(fontsize=7)
    ax_tau.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "vllm_compare.png", dpi=100)
