"""The parallel drafters beside the sequential ones (issue 23's side-by-side table).

    python -m tests.bench.bench_parallel_drafters [--tokens 300000] [--k 3] [--prompts 64] [--vllm]
        [--drafts eagle3 scylla peagle dflash] [--out outputs/parallel-drafters] [-- extra train overrides]

EAGLE-3 (1 layer, drafts one token per forward), Scylla (the same head with 2 layers), P-EAGLE (the EAGLE-3
head trained to draft k tokens in one forward) and DFlash (a 1-layer block drafter: the last token + k mask
slots in one forward) are each pretrained against the same target on the same Python-docs tokens in the same
order (`stage=pretrain`, `train.max_tokens=--tokens`, seed 0) with 2-rank DeepSpeed, then decoded by our
engine on the same --prompts task prompts as chains of k drafted tokens at temperature 0 and 1. Per draft and
temperature: tau with its 95 % interval (over prompts), draft milliseconds per step (and in plain target
steps timed in the same run), and the speed-up over the target alone in the same engine with its 95 %
interval. Writes table.md, compare.csv and compare.png under --out (the CSV and plot as `python -m
eval.compare` writes them). A finished training run is reused, and so is a finished eval made with the same
settings.

--vllm (needs DRAFTFORGE_VLLM_PYTHON, docs/serving.md) also serves each export in vLLM at T=0 on the same
prompts (`python -m eval engine=vllm`: greedy outputs and per-position accepted counts must equal our
engine's, else it stops) and adds vLLM's mean accepted length (1 + accepted / drafts; our tau divides by
verify forwards, so the two differ where an output ends inside a step) to the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.bench_draft_architectures import REPO, train_draft

TEMPERATURES = (0.0, 1.0)


def draft_overrides(draft: str, k: int) -> list[str]:
    """How each draft is built so that all four draft k tokens per step (chain) from equal training."""
    return {
        "eagle3": ["draft=eagle3"],  # one forward per drafted token; TTT unrolls its default 3 steps
        "scylla": ["draft=scylla"],  # eagle3 with 2 layers (the alias's default)
        "peagle": ["draft=peagle", f"draft.ttt_steps={k}"],  # k slots trained in one forward
        "dflash": ["draft=dflash", f"draft.block_size={k + 1}"],  # root + k mask slots
    }[draft]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_parallel_drafters", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--tokens", type=int, default=300_000, help="pretraining target tokens per draft (equal for all)"
    )
    p.add_argument(
        "--k", type=int, default=3, help="tokens drafted per step (chain length); DFlash block = k + 1"
    )
    p.add_argument("--prompts", type=int, default=64, help="task prompts decoded per draft and temperature")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--drafts", nargs="+", default=["eagle3", "scylla", "peagle", "dflash"],
                   choices=["eagle3", "scylla", "peagle", "dflash"])  # fmt: skip
    p.add_argument("--target", default="tiny-llama")
    p.add_argument("--out", default="outputs/parallel-drafters")
    p.add_argument(
        "--vllm", action="store_true", help="also vLLM's tau at T=0, its counts checked equal ours"
    )
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training run")
    args = p.parse_args(argv)
    if args.k < 2 or args.tokens <= 0 or args.prompts < 1:
        p.error("--k must be >= 2 (P-EAGLE drafts at least 2 slots), --tokens and --prompts positive")
    return args


def _ci(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def markdown(rows: list[dict[str, Any]], temperatures: tuple[float, ...] = TEMPERATURES) -> str:
    """One line per draft: size and training, then per temperature tau [ci], draft ms per step, speed-up [ci]."""
    head = ["draft", "trainable params", "pretrain tokens", "train s"]
    for t in temperatures:
        head += [
            f"tau T={t:g} [95 % ci]",
            f"draft ms/step T={t:g} (x target step)",
            f"speed-up T={t:g} [95 % ci]",
        ]
    vllm = any("vllm_tau@T=0" in r for r in rows)
    if vllm:
        head.append("vLLM T=0: 1 + accepted/drafts (counts = ours)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["recipe"], f"{r['trainable_params'] / 1e6:.2f} M", f"{r['tokens']:,}", str(r["train_s"])]
        for t in temperatures:
            speedup = r[f"speedup@T={t:g}"]
            cells += [
                f"{r[f'tau@T={t:g}']:.3f} {_ci(r[f'tau@T={t:g} ci95'])}",
                f"{r[f'draft_ms@T={t:g}']:.2f} ({r[f'draft_cost@T={t:g}']:.2f})",
                "n/a" if speedup is None else f"{speedup:.3f} {_ci(r[f'speedup@T={t:g} ci95'])}",
            ]
        if vllm:
            cells.append(f"{r['vllm_tau@T=0']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def finished_eval(folder: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """The overall metrics of an earlier eval in folder made with these settings (a rerun, e.g. with --vllm,
    does not decode again), else None."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    c = res["config"]
    same = (c["prompts"]["num_prompts"], c["draft_length"], c["max_new_tokens"], c["mode"]) == (
        args.prompts,
        args.k,
        args.max_new_tokens,
        "chain",
    )
    return res["metrics"]["all"] if same and res["lossless"] else None


def vllm_tau(cfg: Any) -> float:
    """vLLM's mean accepted length (1 + accepted / drafts) for one export at T=0. evaluate_vllm raises unless
    vLLM's greedy outputs equal its plain ones and ours and its counters equal ours per position; a passed
    comparison already in cfg.output_dir with the same prompt count and k is read instead of rerun."""
    from eval.vllm_backend.run import evaluate_vllm

    done = Path(cfg.output_dir) / "vllm_compare.json"
    report = json.loads(done.read_text()) if done.is_file() else None
    same = (
        report is not None
        and not report["failures"]
        and (len(report["prompts"]), report["num_speculative_tokens"])
        == (cfg.prompts.num_prompts, cfg.draft_length)
    )
    rows = report["rows"] if same else evaluate_vllm(cfg)["rows"]
    return round(next(r["mean_accepted_length"] for r in rows if r["engine"] == "vllm"), 3)


def main() -> None:
    args = parse_args()
    # Loaded after parsing, so --help answers without importing torch.
    from eval.compare import _rounded, eval_config, evaluate_export, trainable_params, write

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = REPO / args.out
    eval_overrides = ["mode=chain", f"draft_length={args.k}", f"max_new_tokens={args.max_new_tokens}"]
    rows: list[dict[str, Any]] = []
    for draft in args.drafts:
        run_dir = out / draft
        train_s = train_draft(
            run_dir,
            [f"target={args.target}", *draft_overrides(draft, args.k), "stage=pretrain", "data=embedded-pydocs",
             f"train.max_tokens={args.tokens}", "train.seed=0", *args.overrides],
            env,
        )  # fmt: skip
        export = run_dir / "export"
        meta = json.loads((export / "config.json").read_text())["meta"]
        # A run reused from an earlier call with another --tokens would compare unequal budgets: refused.
        seen = meta.get("tokens_seen") or 0
        if not args.tokens <= seen <= args.tokens * 1.05 + 8192:
            print(f"{run_dir}: trained on {seen} target tokens, not --tokens {args.tokens}: delete that folder "
                  "or pass another --out", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
        row: dict[str, Any] = {
            "recipe": draft,
            "trainable_params": trainable_params(export),
            "tokens": meta.get("tokens_seen"),
            "train_s": round(meta.get("train_seconds") or train_s),
        }
        start = time.perf_counter()
        for temp in TEMPERATURES:
            folder = out / "eval" / f"{draft}-t{temp:g}"
            m = finished_eval(folder, args)
            if m is None:
                res = evaluate_export(args.target, export, temp, folder, args.prompts, eval_overrides)
                if temp == 0 and not res.lossless:  # a greedy output that differs from the target's is a bug
                    raise SystemExit(f"{draft}: not lossless at T=0: {res.mismatches[0].describe()}")
                m = res.metrics["all"]
            row[f"tau@T={temp:g}"] = round(m["tau"], 3)
            row[f"tau@T={temp:g} ci95"] = _rounded(m["tau_ci95"])
            row[f"draft_ms@T={temp:g}"] = round(m["draft_ms"], 2)
            # Draft time in plain target steps timed in the same run: comparable across rows whose absolute
            # milliseconds were taken under different load on a shared CPU.
            row[f"draft_cost@T={temp:g}"] = round(m["draft_ms"] / m["baseline_step_ms"], 3)
            row[f"speedup@T={temp:g}"] = None if m["speedup"] is None else round(m["speedup"], 3)
            row[f"speedup@T={temp:g} ci95"] = _rounded(m["speedup_ci95"])
        if args.vllm:
            row["vllm_tau@T=0"] = vllm_tau(eval_config(args.target, export, 0.0, out / "eval" / f"{draft}-vllm",
                                                       args.prompts, [*eval_overrides, "engine=vllm"]))  # fmt: skip
        row["eval_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    write(rows, out, list(TEMPERATURES))
    table = markdown(rows)
    (out / "table.md").write_text(table)
    print(table)
    print(f"wrote {out / 'table.md'}")


if __name__ == "__main__":
    main()
