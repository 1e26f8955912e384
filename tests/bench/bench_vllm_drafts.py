"""Two trained drafts served in vLLM, side by side in ONE run: new tokens/s at each batch size, each draft beside
its own target-alone baseline built just before it, and vLLM's mean accepted length (1 + accepted / drafts).
The paper's engine claim (Scylla vs EAGLE-2 tokens/s in a serving engine) at whatever scale the drafts are.

    python -m tests.bench.bench_vllm_drafts --draft scylla=outputs/experiments/scylla-tiny/distill/export \\
        --draft eagle2=outputs/experiments/eagle2-tiny/sft/export [--prompts 32] [--max-new-tokens 32] \\
        [--batch-sizes 1 8 32] [--rounds 2] [--out FILE.json]

Each draft is exported with our exporter in the layout vLLM loads (as `python -m eval engine=vllm` does).
Order of runs: round r is (plain, draft) pairs for every draft, the draft order reversed on odd rounds, so a
load drift on a shared machine does not favour one draft; each pair's ratio spec / plain is what compares
across drafts. Greedy; every speculative output must equal its plain run's (else the row says how many differ).
Seconds are vLLM's generate() wall time, prefill included; LLM builds are not timed. Needs
$DRAFTFORGE_VLLM_PYTHON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from data.embedded_paths import EMBEDDED_DIR
from eval.config import PromptsConfig
from eval.prompts import load_prompts
from eval.vllm_backend.run import prepare
from eval.vllm_backend.runner import run_vllm, vllm_python
from train.modeling.target import FrozenTarget

K = 3  # draft tokens per step, as in the README's engine=vllm measurements


def plan(drafts: list[str], rounds: int) -> list[tuple[str, str]]:
    """(run name, draft name or "plain") in run order."""
    runs: list[tuple[str, str]] = []
    for r in range(rounds):
        for name in drafts if r % 2 == 0 else drafts[::-1]:
            runs += [(f"plain-for-{name}-{r}", "plain"), (f"{name}-{r}", name)]
    return runs


def summarize(res: dict[str, Any], runs: list[tuple[str, str]], batch_sizes: list[int]) -> list[dict]:
    rows = []
    for (plain_name, _), (spec_name, draft) in zip(runs[::2], runs[1::2], strict=True):
        plain, spec = res[plain_name], res[spec_name]
        for run in (plain, spec):
            if "error" in run:
                raise RuntimeError(f"vLLM refused a run: {run['error'][:500]} at {run['where']}")
        for bs in batch_sizes:
            p, s = plain["by_bs"][str(bs)], spec["by_bs"][str(bs)]
            c = s["counters"]
            rows.append(
                {
                    "draft": draft, "run": spec_name, "batch_size": bs,
                    "spec_tokens_per_s": s["new_tokens"] / s["seconds"],
                    "plain_tokens_per_s": p["new_tokens"] / p["seconds"],
                    "mean_accepted_length": 1 + c["num_accepted_tokens"] / max(c["num_drafts"], 1),
                    "drafts": c["num_drafts"], "accepted": c["num_accepted_tokens"],
                    "per_position": c["num_accepted_tokens_per_pos"],
                    "outputs_differing_from_plain": sum(a != b for a, b in zip(s["outputs"], p["outputs"], strict=True)),
                }
            )  # fmt: skip
            rows[-1]["spec_over_plain"] = rows[-1]["spec_tokens_per_s"] / rows[-1]["plain_tokens_per_s"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draft", action="append", required=True, help="NAME=our export folder (repeat)")
    ap.add_argument("--target", default=str(EMBEDDED_DIR / "targets" / "tiny-llama"))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the rows here (JSON)")
    args = ap.parse_args()
    drafts = dict(d.split("=", 1) for d in args.draft)
    target_path = str(Path(args.target).resolve())
    tok = FrozenTarget.load(target_path).tokenizer
    prompts = [p.input_ids for p in load_prompts(PromptsConfig(num_prompts=args.prompts), tok).prompts]
    runs = plan(list(drafts), args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        served = {}
        for name, path in drafts.items():
            _, folder, method = prepare(path, target_path, Path(tmp) / name)
            served[name] = {"method": method, "model": folder, "num_speculative_tokens": K}
        job = {"target": target_path, "prompts": prompts, "batch_sizes": args.batch_sizes,
               "max_new_tokens": args.max_new_tokens, "temperature": 0.0, "top_p": 1.0, "seed": 0,
               "runs": [{"name": n, "speculative_config": None if d == "plain" else served[d]} for n, d in runs]}  # fmt: skip
        res = run_vllm(vllm_python(), job)["runs"]
    rows = summarize(res, runs, args.batch_sizes)
    print(f"{'run':<14}{'batch':>6}{'spec tok/s':>12}{'plain tok/s':>13}{'spec/plain':>12}{'tau':>7}{'drafts':>8}"
          f"{'differ':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['run']:<14}{r['batch_size']:>6}{r['spec_tokens_per_s']:>12.1f}{r['plain_tokens_per_s']:>13.1f}"
              f"{r['spec_over_plain']:>12.3f}{r['mean_accepted_length']:>7.3f}{r['drafts']:>8}"
              f"{r['outputs_differing_from_plain']:>8}")  # fmt: skip
    names = list(drafts)
    if len(names) == 2:  # the head-to-head: mean over rounds of each pair's spec/plain, and of raw tokens/s
        a, b = names
        print(f"\n{a} vs {b}, mean over {args.rounds} round(s):")
        for bs in args.batch_sizes:
            mean = {n: [r for r in rows if r["draft"] == n and r["batch_size"] == bs] for n in names}
            sp = {n: sum(r["spec_over_plain"] for r in v) / len(v) for n, v in mean.items()}
            tps = {n: sum(r["spec_tokens_per_s"] for r in v) / len(v) for n, v in mean.items()}
            print(f"  batch {bs:>3}: tokens/s {tps[a]:.1f} vs {tps[b]:.1f} ({tps[a] / tps[b]:.2f}x); "
                  f"spec/plain {sp[a]:.3f} vs {sp[b]:.3f} ({sp[a] / sp[b]:.2f}x)")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"args": {**vars(args), "out": str(args.out)}, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
