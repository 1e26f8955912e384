"""New tokens/s of `python -m data regenerate` with vLLM vs HF `generate`, side by side (same prompts, batch
size, greedy). Needs $DRAFTFORGE_VLLM_PYTHON. Seconds are generation only (no model load, no vLLM build).

    python -m tests.bench.bench_regenerate_vllm [--prompts 64] [--batch-size 16] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from data.embedded_paths import CORPUS_DIR, EMBEDDED_DIR
from data.regenerate import RegenJob, run_regenerate
from data.sources import SourceSpec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--target", default=str(EMBEDDED_DIR / "targets" / "tiny-llama"))
    args = ap.parse_args()
    src = SourceSpec(files=[str(CORPUS_DIR / "dialogues_valid.jsonl.gz")])
    stats = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("hf", "vllm"):
            job = RegenJob(args.target, src, str(Path(tmp) / f"{backend}.jsonl"), batch_size=args.batch_size,
                           max_new_tokens=args.max_new_tokens, limit=args.prompts, progress=False,
                           backend=backend)  # fmt: skip
            stats[backend] = run_regenerate(job)
    print(f"{'backend':<8}{'prompts':>9}{'new tokens':>12}{'seconds':>10}{'tokens/s':>10}")
    for name, s in stats.items():
        print(
            f"{name:<8}{s['generated']:>9}{s['new_tokens']:>12}{s['seconds']:>10.2f}{s['tokens_per_s']:>10.1f}"
        )
    print(f"vllm / hf tokens/s: {stats['vllm']['tokens_per_s'] / stats['hf']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
