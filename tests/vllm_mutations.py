"""Our chain engine and real vLLM on the same trained drafts, before and after perturbing each weight group.

For each architecture: one vLLM LLM is built with the trained export; then each perturbed copy (see
tests/export_mutations.py) is swapped in through vLLM's own in-place reload (tests/vllm_mutation_worker.py)
and the same prompts decoded again; the unperturbed export is swapped back in last. Our engine decodes each
draftforge folder itself. A group is *seen* by vLLM when

  - our engine's counts change when the group is perturbed (the perturbation matters to the draft), and
  - vLLM's counts (drafts, draft tokens, accepted, accepted per position, per prompt) equal ours before and
    after, and its outputs equal its plain greedy outputs.

Together: vLLM reads that group as our engine does. A group whose perturbation leaves our counts unchanged
proves nothing and is reported as such (e.g. t2d, which neither engine reads at decode time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.target_io import eos_token_ids
from eval.config import PromptsConfig
from eval.drafters import DraftSettings, load_drafter
from eval.engine import Engine
from eval.prompts import load_prompts
from eval.vllm_backend import compare
from eval.vllm_backend.runner import run_script
from tests.conftest import REPO
from tests.engine_heads import DECODE_NEW_TOKENS, DECODE_PROMPTS, K
from tests.export_mutations import groups, perturbed_copy
from train.drafts.registry import spec_for
from train.export import export_draft
from train.modeling.target import FrozenTarget

WORKER = REPO / "tests" / "vllm_mutation_worker.py"
ORIGINAL = "(unperturbed, swapped back)"


@dataclass
class Row:
    arch: str
    group: str
    ours: dict[str, Any]  # our chain engine's counts (compare.our_counts)
    vllm: dict[str, Any] | None  # vLLM's counters, None when it refused
    changed: bool  # our counts differ from the unperturbed export's
    failures: list[str] = field(default_factory=list)

    def rate(self, counts: dict[str, Any] | None) -> str:
        if not counts or not counts.get("num_draft_tokens"):
            return "-"
        return f"{counts['num_accepted_tokens']}/{counts['num_draft_tokens']}"


def our_engine(draft: Path, target: FrozenTarget, prompts: list[tuple[str, list[int]]]) -> list[dict]:
    """Our chain engine at k=K, greedy, batch 1: what `python -m eval mode=chain draft_length=3` decodes,
    without its baseline decode and reports (vLLM's plain run is the greedy reference here)."""
    drafter, _ = load_drafter(str(draft), target)
    eos = eos_token_ids(target.model, target.tokenizer)
    engine = Engine(target, drafter, DraftSettings(mode="chain", draft_length=K), eos)
    records = []
    for pid, ids in prompts:
        row = engine.generate([ids], DECODE_NEW_TOKENS).rows[0]
        records.append({"id": pid, "prompt_token_ids": ids, "output_token_ids": row.tokens,
                        "accepted_lengths": row.accepted})  # fmt: skip
    return records


def counts(records: list[dict]) -> dict[str, Any]:
    return compare.our_counts([r["accepted_lengths"] for r in records], K)


def run_vllm_swaps(python: str, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Every run of the job, a new worker process after a refused build (as runner.run_vllm does)."""
    done: dict[str, Any] = {}
    while pending := [r for r in job["runs"] if r["name"] not in done]:
        done.update(run_script(python, WORKER, {**job, "runs": pending}, timeout_s)["runs"])
    return done


def mutation_check(
    python: str,
    target_dir: Path,
    exports: dict[str, Path],
    pick: dict[str, list[str]] | None,
    work: Path,
    timeout_s: float = 1800,
) -> tuple[dict[str, list[dict]], list[Row]]:
    """exports: arch -> trained draftforge export. pick: arch -> the groups to perturb (None = every group).
    Returns our unperturbed records per arch and one Row per (arch, group), the unperturbed export first."""
    target = FrozenTarget.load(str(target_dir))
    target_path = str(target_dir.resolve())
    ours: dict[str, list[dict]] = {}
    ours_swapped: dict[tuple[str, str], list[dict]] = {}
    prompts = [
        (p.id, p.input_ids)
        for p in load_prompts(PromptsConfig(num_prompts=DECODE_PROMPTS), target.tokenizer).prompts
    ]
    runs: list[dict[str, Any]] = [{"name": "plain", "speculative_config": None}]
    for arch, src in exports.items():
        fmt, method = spec_for(arch).serve["vllm"]
        served = export_draft(src, fmt, work / arch / "served", target_path)
        ours[arch] = our_engine(src, target, prompts)
        swaps = []
        for group in groups(src) if pick is None else pick[arch]:
            tag = group.replace(" ", "_")
            bad = perturbed_copy(src, group, work / arch / f"ours-{tag}")
            ours_swapped[arch, group] = our_engine(bad, target, prompts)
            bad_served = export_draft(bad, fmt, work / arch / f"served-{tag}", target_path)
            swaps.append({"name": group, "weights": str(bad_served)})
        swaps.append({"name": ORIGINAL, "weights": str(served)})
        ours_swapped[arch, ORIGINAL] = ours[arch]
        spec = {"method": method, "model": str(served), "num_speculative_tokens": K}
        runs.append({"name": arch, "speculative_config": spec, "swaps": swaps})
    first = next(iter(ours.values()))
    job = {"target": target_path, "prompts": [r["prompt_token_ids"] for r in first], "batch_sizes": [1],
           "max_new_tokens": DECODE_NEW_TOKENS, "temperature": 0.0, "top_p": 1.0, "seed": 0, "runs": runs}  # fmt: skip
    result = run_vllm_swaps(python, job, timeout_s)
    (work / "vllm.json").write_text(json.dumps(result))
    if "error" in result["plain"]:
        raise RuntimeError(f"vLLM refused the plain target: {result['plain']}")
    ids = [r["id"] for r in first]
    rows: list[Row] = []
    for arch in exports:
        run = result[arch]
        base = counts(ours[arch])
        entries = [("(trained export)", ours[arch], run)] + [
            (g, ours_swapped[arch, g], run.get("swaps", {}).get(g, {"error": "not run"}))
            for g in [s["name"] for s in next(r for r in runs if r["name"] == arch)["swaps"]]
        ]
        for group, records, vllm_run in entries:
            mine = counts(records)
            row = Row(arch, group, mine, None, mine != base)
            if "error" in run or "error" in vllm_run:
                row.failures.append(f"vLLM: {(run if 'error' in run else vllm_run)['error'][:300]}")
            else:
                checks = compare.Checks()
                compare.check_greedy(
                    ids, {1: records}, {"plain": result["plain"], "spec": vllm_run}, K, checks
                )
                row.vllm = {key: vllm_run["by_bs"]["1"]["counters"].get(key) for key in compare.COUNT_KEYS}
                row.failures += checks.failures
            rows.append(row)
    return ours, rows


def table(target_name: str, rows: list[Row]) -> str:
    """Markdown: accepted/drafted tokens in each engine, before (the trained export) and after each group."""
    before = {r.arch: r for r in rows if r.group == "(trained export)"}
    lines = [
        f"target {target_name}: accepted / drafted tokens at k={K}, {DECODE_PROMPTS} prompts x "
        f"{DECODE_NEW_TOKENS} new tokens, greedy",
        "",
        "| draft | perturbed group | ours before | vLLM before | ours after | vLLM after | counts changed | vLLM = ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.group == "(trained export)":
            continue
        b = before[r.arch]
        lines.append(
            f"| {r.arch} | {r.group} | {b.rate(b.ours)} | {b.rate(b.vllm)} | {r.rate(r.ours)} | {r.rate(r.vllm)} "
            f"| {'yes' if r.changed else 'NO'} | {'yes' if not r.failures else 'NO: ' + r.failures[0][:80]} |"
        )
    return "\n".join(lines)
