"""Our chain engine and real vLLM on the same trained drafts, before and after perturbing each weight group.

For each architecture: one vLLM LLM is built with the trained export; then each perturbed copy (see
tests/export_mutations.py) is swapped in through vLLM's own in-place reload (tests/vllm_mutation_worker.py)
and the same prompts decoded again; the unperturbed export is swapped back in last. A tied embedding and LM
head is the exception: its perturbed copy gets an LLM of its own (FRESH_BUILD below). Our engine decodes each
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
from tests.export_mutations import TIED, groups, perturbed_copy
from train.drafts.registry import spec_for
from train.export import export_draft
from train.modeling.target import FrozenTarget

WORKER = REPO / "tests" / "vllm_mutation_worker.py"
ORIGINAL = "(unperturbed, swapped back)"
# Groups served by a fresh LLM build instead of an in-place swap. Measured 2026-12-06 (dense head, tiny-llama,
# tied embedding = LM head perturbed): after the swap vLLM accepted 8 of 183 drafted tokens where our engine
# accepted 1 of 201, while a fresh `python -m eval engine=vllm` build of the same served folder gave 1 of 201
# with counts equal ours. The in-place reload does not carry a tied pair into drafting as a load does; that is
# the reload's behaviour, not how vLLM serves the export, so this group is checked the way users load it.
FRESH_BUILD = {TIED}
# A perturbation that leaves our engine's counts unchanged proves nothing, so it is made stronger, in these
# steps, until our counts move (measured on qwen2-4layers: the final norm, Scylla's second layer and Medusa's
# third head and the dense head's k biases kept their counts at strength 1; 6 prompts x 16 tokens leave
# few argmaxes near a tie).
STRENGTHS = (1.0, 4.0, 16.0)


@dataclass
class Row:
    arch: str
    group: str
    ours: dict[str, Any]  # our chain engine's counts (compare.our_counts)
    vllm: dict[str, Any] | None  # vLLM's counters, None when it refused
    changed: bool  # our counts differ from the unperturbed export's
    failures: list[str] = field(default_factory=list)
    strength: float = 1.0  # the perturbation's strength (STRENGTHS) that moved our counts, or the last tried

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


def fresh_name(arch: str, group: str) -> str:
    return f"{arch} / {group} (fresh build)"


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
    strengths: dict[tuple[str, str], float] = {}
    picked = {arch: list(groups(src)) if pick is None else pick[arch] for arch, src in exports.items()}
    prompts = [
        (p.id, p.input_ids)
        for p in load_prompts(PromptsConfig(num_prompts=DECODE_PROMPTS), target.tokenizer).prompts
    ]
    runs: list[dict[str, Any]] = [{"name": "plain", "speculative_config": None}]
    for arch, src in exports.items():
        fmt, method = spec_for(arch).serve["vllm"]
        served = export_draft(src, fmt, work / arch / "served", target_path)
        ours[arch] = our_engine(src, target, prompts)
        base = counts(ours[arch])
        swaps, fresh = [], []
        for group in picked[arch]:
            tag = group.replace(" ", "_")
            for strength in STRENGTHS:
                bad = perturbed_copy(src, group, work / arch / f"ours-{tag}", strength)
                ours_swapped[arch, group] = our_engine(bad, target, prompts)
                strengths[arch, group] = strength
                if counts(ours_swapped[arch, group]) != base:
                    break
            bad_served = export_draft(bad, fmt, work / arch / f"served-{tag}", target_path)
            if group in FRESH_BUILD:
                spec = {"method": method, "model": str(bad_served), "num_speculative_tokens": K}
                fresh.append({"name": fresh_name(arch, group), "speculative_config": spec})
            else:
                swaps.append({"name": group, "weights": str(bad_served)})
        swaps.append({"name": ORIGINAL, "weights": str(served)})
        ours_swapped[arch, ORIGINAL] = ours[arch]
        spec = {"method": method, "model": str(served), "num_speculative_tokens": K}
        runs += [{"name": arch, "speculative_config": spec, "swaps": swaps}, *fresh]
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
        entries = [("(trained export)", ours[arch], run)]
        for group in picked[arch]:
            got = (
                result.get(fresh_name(arch, group))
                if group in FRESH_BUILD
                else run.get("swaps", {}).get(group)
            )
            entries.append((group, ours_swapped[arch, group], got or {"error": "not run"}))
        entries.append((ORIGINAL, ours[arch], run.get("swaps", {}).get(ORIGINAL, {"error": "not run"})))
        for group, records, vllm_run in entries:
            mine = counts(records)
            row = Row(arch, group, mine, None, mine != base, strength=strengths.get((arch, group), 1.0))
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
        f"{DECODE_NEW_TOKENS} new tokens, greedy; xN: the perturbation N times the default strength (STRENGTHS)",
        "",
        "| draft | perturbed group | ours before | vLLM before | ours after | vLLM after | our counts changed | vLLM = ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.group == "(trained export)":
            continue
        b = before[r.arch]
        label = r.group + (" (fresh build)" if r.group in FRESH_BUILD else "")
        label += f" x{r.strength:g}" if r.strength != 1.0 else ""
        moved = "n/a (the export itself)" if r.group == ORIGINAL else ("yes" if r.changed else "NO")
        same = "yes" if not r.failures else "NO: " + r.failures[0][:80]
        lines.append(
            f"| {r.arch} | {label} | {b.rate(b.ours)} | {b.rate(b.vllm)} | {r.rate(r.ours)} | {r.rate(r.vllm)} "
            f"| {moved} | {same} |"
        )
    return "\n".join(lines)
