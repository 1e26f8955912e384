"""The batch law written into vLLM's speculative config: `num_speculative_tokens_per_batch_size`.

vLLM 0.32's field (vllm/config/speculative.py:491, `list[tuple[int, int, int]] | None`; checked by
vllm/v1/spec_decode/dynamic/utils.py:7 when the scheduler is built) is a list of inclusive batch-size ranges
[start, end, k]: the first starts at 1, ranges do not overlap, k >= 0. Each k is capped by
`num_speculative_tokens` (utils.py:77), so that must be the largest k; the scheduler looks k up by the number
of requests it schedules in a step (vllm/v1/core/sched/scheduler.py:1487) and the last range's k carries on
past its end.

From the batch law: each chain length k's speed-up is fitted against the batch size in the law's form,
speed-up_k(B) = a_k + b_k ln B (eval.laws.forms.LOG_LINEAR), over the batch sizes measured on vLLM's batch
axis (eval.laws.batch_vllm); every B from 1 to max_batch takes the k whose fitted line is highest, and equal
neighbours merge into one range. A fitted line rather than the best k per measured batch: between and beyond
the measured sizes there is nothing else to go by, and a noisy best k (docs/scaling-laws.md: 1, 2, 2, 2, 2,
1, 1) would otherwise flip back and forth.
"""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any

import numpy as np

from eval.laws.forms import LOG_LINEAR
from eval.laws.planner import Laws, chain_speedups

Schedule = list[list[int]]  # [[start, end, k], ...], inclusive batch-size ranges, as vLLM reads the JSON
FIELD = "num_speculative_tokens_per_batch_size"
# Why the schedule and parallel drafting are not combined (measured and read in vLLM 0.32; ../shared/DESIGN.md).
PARALLEL_DRAFTING_REFUSAL = (
    f"{FIELD} with parallel_drafting: vLLM 0.32 sizes parallel drafting's input slots by the k fixed at "
    "start-up (vllm/v1/spec_decode/llm_base_proposer.py:114, :914) but reshapes the drafts by each step's k "
    "(:532, :637), so requests are handed each other's drafts (still lossless, lower acceptance: first-position "
    "accepts 17 -> 10 measured here); serve a parallel-drafting head with a fixed num_speculative_tokens, or "
    "the schedule with a sequential (eagle3) head"
)


class ScheduleRefused(ValueError):
    """The asked-for config would be wrong on vLLM 0.32; the message says why and what to do instead."""


def fitted_lines(speedups: dict[int, dict[int, float]]) -> dict[int, np.ndarray]:
    """k -> (a_k, b_k) of speed-up = a + b ln B, from {batch: {k: speed-up}}. A k measured at one batch size
    only is a flat line at that speed-up (no slope to fit); k = 0 is never among them (the target alone)."""
    ks = sorted({k for per_b in speedups.values() for k in per_b})
    lines = {}
    for k in ks:
        pts = sorted((b, s[k]) for b, s in speedups.items() if k in s)
        u = np.log([float(b) for b, _ in pts])
        y = np.array([v for _, v in pts], dtype=float)
        lines[k] = LOG_LINEAR.fit(u, y) if len(np.unique(u)) >= 2 else np.array([y.mean(), 0.0])
    if not lines:
        raise ValueError("no chain speed-ups to fit: the batch axis has no chain-k<k> shapes")
    return lines


def k_schedule(speedups: dict[int, dict[int, float]], max_batch: int) -> Schedule:
    """Inclusive ranges [start, end, k] over batch sizes 1..max_batch, each B given its fitted best k."""
    if max_batch < 1:
        raise ValueError(f"max_batch={max_batch}: must be >= 1 (vLLM's max_num_seqs)")
    lines = fitted_lines(speedups)
    ks = sorted(lines)
    out: Schedule = []
    for b in range(1, max_batch + 1):
        pred = [float(LOG_LINEAR.f(np.log(b), *lines[k])) for k in ks]
        k = ks[int(np.argmax(pred))]  # ties: the shorter chain (argmax takes the first)
        if out and out[-1][2] == k:
            out[-1][1] = b
        else:
            out.append([b, b, k])
    return out


def speculative_config(
    method: str, model: str, schedule: Schedule, parallel_drafting: bool = False
) -> dict[str, object]:
    """vLLM's speculative_config with the schedule: num_speculative_tokens is its largest k (vLLM caps every
    k by it). Refuses the pair with parallel drafting (PARALLEL_DRAFTING_REFUSAL)."""
    if parallel_drafting:
        raise ScheduleRefused(PARALLEL_DRAFTING_REFUSAL)
    return {
        "method": method,
        "model": model,
        "num_speculative_tokens": max(k for _, _, k in schedule),
        FIELD: schedule,
    }


def k_at(schedule: Schedule, batch: int) -> int:
    """The k vLLM uses at `batch` requests per step (the last range's k past its end, as vLLM does)."""
    for start, end, k in schedule:
        if start <= batch <= end:
            return k
    return schedule[-1][2]


def write_schedule(laws: Laws, best: dict[str, Any], args: Namespace) -> dict[str, object]:
    """`python -m eval.plan ... --engine vllm`: the planner's best (depth, tokens) at --batch, its chain
    speed-ups at every measured batch size, the schedule from them, written as vLLM's speculative config.
    Bad input raises ValueError (eval.plan prints it and exits 2)."""
    if args.draft is None or args.out is None:
        raise ValueError(
            "--engine vllm needs --draft (the folder vLLM loads) and --out (the config to write)"
        )
    if args.parallel_drafting:
        raise ScheduleRefused(PARALLEL_DRAFTING_REFUSAL)
    if not (Path(args.draft) / "config.json").is_file():
        raise ValueError(f"--draft {args.draft}: no config.json there; give the draft folder vLLM loads "
                         "(python -m train.export --format <vLLM's format>)")  # fmt: skip
    if _drafts_in_parallel(Path(args.draft)):
        raise ScheduleRefused(
            f"--draft {args.draft} is a parallel-drafting head: {PARALLEL_DRAFTING_REFUSAL}"
        )
    depth, tokens = best["depth"], best["tokens"]
    speedups = chain_speedups(laws, depth, tokens)
    if not speedups:
        raise ValueError("the laws' batch axis has no chain-k<k> shapes (vLLM's): run python -m "
                         "eval.laws.batch_vllm <export> --out DIR --laws <sweep laws.json> and plan with DIR/laws.json")  # fmt: skip
    schedule = k_schedule(speedups, args.max_batch)
    config = speculative_config(args.method, str(Path(args.draft).resolve()), schedule)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(config, indent=1) + "\n")
    lines = fitted_lines(speedups)
    measured = sorted(speedups)
    print(f"vLLM schedule for depth {depth}, {tokens:.3g} tokens (the best at batch {args.batch}), from the batch "
          f"law speed-up_k = a + b ln B fitted at batch {', '.join(map(str, measured))}:")  # fmt: skip
    for k, (a, b) in lines.items():
        print(f"  k={k}: speed-up = {a:.3f} {b:+.4f} ln B")
    print(f"  {FIELD} = {json.dumps(schedule)}" + (f" (batch sizes above {measured[-1]}, the largest measured, "
          "follow the lines extrapolated)" if args.max_batch > measured[-1] else ""))  # fmt: skip
    slow = [s for s in schedule if _best_at(lines, s[0]) < 1.0 and _best_at(lines, s[1]) < 1.0]
    if slow:
        print("warning: the law predicts every k slower than the target alone at batch sizes "
              + ", ".join(f"{s[0]}-{s[1]}" for s in slow) + " (speed-up < 1): serving without a draft is faster there")  # fmt: skip
    print(f"wrote {args.out}: LLM(..., speculative_config=json.load(open({str(args.out)!r})))")
    return config


def _best_at(lines: dict[int, np.ndarray], batch: int) -> float:
    return max(float(LOG_LINEAR.f(np.log(batch), *p)) for p in lines.values())


def _drafts_in_parallel(folder: Path) -> bool:
    """A P-EAGLE export (speculators_model_type "peagle", ../shared/DESIGN.md) or a config that asks for it."""
    cfg = json.loads((folder / "config.json").read_text())
    return cfg.get("speculators_model_type") == "peagle" or bool(cfg.get("parallel_drafting"))
