"""`python -m eval.laws.batch_vllm <draft export> --out DIR [--ks 1,2,3,4] [--batch-sizes 1,2,4,...,64]
[--laws laws.json] [eval overrides]`: the batch-size axis of the laws as vLLM serves the draft.

For each draft length k, one `python -m eval engine=vllm mode=chain draft_length=k batch_sizes=[...]` run
(eval.vllm_backend.run.evaluate_vllm, unchanged): one vLLM build of the target alone and one with the draft
(vLLM 0.32 serves EAGLE-3/Scylla drafts as chains of num_speculative_tokens = k), each decoding every batch
size; our chain engine decodes the same prompts, and the backend fails the run unless, at temperature 0,
vLLM's speculative outputs equal its target-alone outputs and both engines' acceptance counters agree. The
target-alone run is rebuilt per k on purpose: each k's speed-up is then a ratio of two runs timed minutes
apart, not across the whole sweep on a shared machine. A k whose folder already holds a passing report made
with the same settings is not rerun (the command resumes).

One more run of our engine decodes the same prompts with the default tree at batch 1: its tau anchors the
planner, whose law is fitted on the tree's tau (eval.laws.planner.best_for_budget scales by tau_s / tau_tree).
Report, fits and records: eval.laws.batch_vllm_report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data.paths import CONF_DIR, register_resolvers
from eval.config import EvalConfig, to_eval_config
from eval.inputs import check_inputs, use_recorded_target
from eval.laws.batch_vllm_report import JOB_FILE, report

KS = (1, 2, 3, 4)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
ANCHOR_DIR = "tree-anchor"


def compose_eval(overrides: list[str]) -> EvalConfig:
    """The config `python -m eval <overrides>` would run, built with Hydra's compose API."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose("eval", overrides=overrides)
    chosen = {o.lstrip("+~").split("=")[0] for o in overrides}
    typed = use_recorded_target(
        to_eval_config(raw), chosen & {"target", "target.name_or_path", "target.tokenizer"}
    )
    check_inputs(typed)
    return typed


def k_overrides(draft: Path, k: int, batch_sizes: list[int], extra: list[str], out: Path) -> list[str]:
    bs = ",".join(map(str, batch_sizes))
    return ["engine=vllm", f"draft_path={draft}", "mode=chain", f"draft_length={k}", f"batch_sizes=[{bs}]",
            "temperature=0.0", "logger=none", "progress=false", *extra, f"output_dir={out}"]  # fmt: skip


def finished(out: Path, overrides: list[str]) -> bool:
    """A passing report made with exactly these overrides (a changed setting reruns the k)."""
    report_file, job_file = out / "vllm_compare.json", out / JOB_FILE
    if not (report_file.is_file() and job_file.is_file()):
        return False
    if json.loads(job_file.read_text()).get("overrides") != overrides:
        return False
    return not json.loads(report_file.read_text())["failures"]


def run_k(draft: Path, k: int, batch_sizes: list[int], extra: list[str], root: Path) -> Path:
    from eval.vllm_backend.run import evaluate_vllm  # torch, transformers: only when there is work

    out = root / f"k{k}"
    overrides = k_overrides(draft, k, batch_sizes, extra, out)
    if finished(out, overrides):
        print(f"[batch_vllm] k={k}: finished earlier ({out}), skipping", flush=True)
        return out
    print(f"[batch_vllm] k={k}: vLLM and our chain engine, batch sizes {batch_sizes} -> {out}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / JOB_FILE).unlink(missing_ok=True)
    evaluate_vllm(compose_eval(overrides))  # raises VllmMismatch on any greedy or counter difference
    (out / JOB_FILE).write_text(json.dumps({"overrides": overrides}, indent=1) + "\n")
    return out


def run_anchor(draft: Path, extra: list[str], root: Path) -> Path:
    """Our engine's default tree at batch 1 on the same prompts (tau is batch-invariant at temperature 0)."""
    from eval.run import evaluate

    out = root / ANCHOR_DIR
    overrides = [f"draft_path={draft}", "mode=tree", "batch_sizes=[1]", "temperature=0.0", "logger=none",
                 "progress=false", *extra, f"output_dir={out}"]  # fmt: skip
    if not finished_anchor(out, overrides):
        (out / JOB_FILE).unlink(missing_ok=True)
        evaluate(compose_eval(overrides))
        (out / JOB_FILE).write_text(json.dumps({"overrides": overrides}, indent=1) + "\n")
    return out


def finished_anchor(out: Path, overrides: list[str]) -> bool:
    job = out / JOB_FILE
    return (
        (out / "results.json").is_file()
        and job.is_file()
        and json.loads(job.read_text())["overrides"] == overrides
    )


def ints(text: str) -> list[int]:
    """ "1,2,4": comma-separated, so that eval overrides after the option are not taken for more values."""
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.laws.batch_vllm", description=__doc__.split("\n\n")[0])
    p.add_argument("draft", type=Path, help="a draftforge export (eagle3/scylla: served as an EAGLE-3 chain)")
    p.add_argument("--out", type=Path, required=True, help="one folder per k, the report, batch_vllm.json")
    p.add_argument(
        "--ks", type=ints, default=list(KS), help="draft lengths (vLLM num_speculative_tokens): 1,2,3,4"
    )
    p.add_argument("--batch-sizes", type=ints, default=list(BATCH_SIZES), help="e.g. 1,2,4,8,16,32,64")
    p.add_argument("--laws", type=Path, help="a sweep's laws.json: also write OUT/laws.json with these costs")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the speed-up fits")
    p.add_argument(
        "overrides", nargs="*", help="eval overrides, e.g. prompts.num_prompts=64 max_new_tokens=24"
    )
    args = p.parse_intermixed_args(argv)  # eval overrides may come after the options
    draft = args.draft.resolve()
    for k in args.ks:
        run_k(draft, k, args.batch_sizes, args.overrides, args.out)
    run_anchor(draft, args.overrides, args.out)
    report(args.out, args.ks, args.batch_sizes, args.laws, args.boot)


if __name__ == "__main__":
    main()
