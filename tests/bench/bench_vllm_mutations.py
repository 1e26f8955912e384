"""Does vLLM read every weight of our exports? The mutation table, per architecture and weight group.

    DRAFTFORGE_VLLM_PYTHON=$PWD/.cache/vllm-venv/bin/python python -m tests.bench.bench_vllm_mutations \
        [--targets tiny-llama qwen2-4layers] [--archs eagle3 scylla eagle medusa dense] [--out outputs/mutations]

Each architecture is trained briefly against the target's own greedy continuations (tests/engine_heads.py,
cached), served by real vLLM, and each weight group of its export perturbed in turn (tests/export_mutations.py)
and swapped into the same vLLM engine (tests/vllm_mutation_worker.py). Prints one markdown table per target:
accepted / drafted tokens at k=3 in our chain engine and in vLLM, before and after each perturbation, whether
our counts changed (the perturbation has power) and whether vLLM's counts still equal ours (it reads the group
as we do). Writes the tables to <out>/mutations.md. Exits 1 when a group fails either check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from eval.vllm_backend.runner import vllm_python
from tests.conftest import REPO, TINY_LLAMA
from tests.engine_heads import ARCHS, CACHE, qwen2_four_layers, trained_export
from tests.vllm_mutations import ORIGINAL, mutation_check, table

TARGETS = {
    "tiny-llama": lambda: TINY_LLAMA,
    "qwen2-4layers": lambda: qwen2_four_layers(CACHE / "qwen2-4layers"),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--out", default="outputs/mutations")
    args = p.parse_args()
    python = vllm_python()
    out = REPO / args.out
    tables, bad = [], 0
    for name in args.targets:
        t0 = time.perf_counter()
        target_dir = Path(TARGETS[name]())
        exports = {arch: trained_export(arch, target_dir) for arch in args.archs}
        _, rows = mutation_check(python, target_dir, exports, None, out / name)
        tables.append(table(name, rows) + f"\n\n({time.perf_counter() - t0:.0f} s, shared CPU)")
        print(tables[-1], flush=True)
        bad += sum(
            1 for r in rows if r.failures or (r.group not in ("(trained export)", ORIGINAL) and not r.changed)
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutations.md").write_text("\n\n".join(tables) + "\n")
    print(f"{bad} rows fail a check; tables in {out / 'mutations.md'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
