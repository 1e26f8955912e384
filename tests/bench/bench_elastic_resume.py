"""Which ZeRO stages resume on which world sizes, and how long the conversion takes (docs/elastic.md).

    python -m tests.bench.bench_elastic_resume [--stages 0,1,2,3] [--steps 6] [--layers 1]

Per stage: (A) an uninterrupted 2-rank run of --steps steps, checkpoints every 2; (B) 1 rank resuming A's
step-2 checkpoint (accumulation 2, the same global batch of 8); (C) 2 ranks resuming B's step-4 checkpoint.
Then two layout changes on 2 ranks from A's step 2: ZeRO-2 -> ZeRO-3 and ZeRO-3 -> plain torch on 1 rank.
Prints one row per resume: the conversion seconds the run reported ("[resume] ... in X s") and the largest
relative difference of its training losses from A's at the same steps.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "data" / "embedded" / "targets" / "tiny-llama"
CORPUS = REPO / "data" / "embedded" / "corpus" / "pydocs_train.jsonl.gz"


def overrides(corpus: Path, out: Path, steps: int, layers: int, engine: str) -> list[str]:
    return [
        f"target.name_or_path={TARGET}",
        f"data.train_files=[{corpus}]",
        f"data.valid_files=[{corpus}]",
        "data.seq_len=64",
        "train.micro_batch_size=4",
        "train.global_batch_size=8",
        f"train.max_steps={steps}",
        "train.log_every=1",
        "train.eval_every=0",
        "train.eval_batches=2",
        "train.save_every=2",
        "train.keep_checkpoints=10",
        "train.progress=false",
        "optim.lr=3e-3",
        "optim.warmup_steps=2",
        f"draft.num_layers={layers}",
        f"output_dir={out}",
        "logger=none",
        engine,
        "resume=true",
    ]


def run(args: list[str], nproc: int) -> tuple[str, float]:
    cmd = [sys.executable, "-m", "train", *args]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *cmd[1:],
        ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=None)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, time.perf_counter() - t0


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["train/loss"]
    return out


def resumed_from(src: Path, step: int, dst: Path) -> Path:
    """A copy of `src` holding only its checkpoint of `step` (and its metrics up to it)."""
    (dst / "checkpoints").mkdir(parents=True)
    shutil.copytree(src / "checkpoints" / f"step_{step:08d}", dst / "checkpoints" / f"step_{step:08d}")
    return dst


def row(label: str, log: str, ref: dict[int, float], got: dict[int, float], after: int) -> str:
    m = re.search(
        r"\[resume\] (.*?): model, optimizer and schedule resharded from \d+ shard\(s\) in ([\d.]+) s", log
    )
    if m is None:
        return f"| {label} | not resharded | - | - |"
    diff = max(abs(got[s] - ref[s]) / abs(ref[s]) for s in got if s > after)
    return f"| {label} | {m.group(1)} | {m.group(2)} | {diff:.1e} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="0,1,2,3")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--layers", type=int, default=1)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-elastic-"))
    corpus = tmp / "small.jsonl"
    with gzip.open(CORPUS, "rt") as f, open(corpus, "w") as g:
        g.writelines(line for _, line in zip(range(16), f, strict=False))
    rows = []
    refs: dict[int, Path] = {}
    for stage in (int(s) for s in a.stages.split(",")):
        engine = f"deepspeed=zero{stage}"
        ref = tmp / f"z{stage}-A"
        run(overrides(corpus, ref, a.steps, a.layers, engine), 2)
        refs[stage] = ref
        b = resumed_from(ref, 2, tmp / f"z{stage}-B")
        log, _ = run(overrides(corpus, b, a.steps, a.layers, engine), 1)
        rows.append(row(f"ZeRO-{stage}, 2 -> 1", log, losses(ref), losses(b), 2))
        c = resumed_from(b, 4, tmp / f"z{stage}-C")
        log, _ = run(overrides(corpus, c, a.steps, a.layers, engine), 2)
        rows.append(row(f"ZeRO-{stage}, 1 -> 2", log, losses(ref), losses(c), 4))
    if 2 in refs:
        d = resumed_from(refs[2], 2, tmp / "z2-to-z3")
        log, _ = run(overrides(corpus, d, a.steps, a.layers, "deepspeed=zero3"), 2)
        rows.append(row("ZeRO-2 -> ZeRO-3, 2 -> 2", log, losses(refs[2]), losses(d), 2))
    if 3 in refs:
        e = resumed_from(refs[3], 2, tmp / "z3-to-torch")
        log, _ = run(overrides(corpus, e, a.steps, a.layers, "deepspeed=none"), 1)
        rows.append(row("ZeRO-3 -> plain torch, 2 -> 1", log, losses(refs[3]), losses(e), 2))
    print(f"draft.num_layers={a.layers}, {a.steps} steps, global batch 8 (micro 4)")
    print("| case | what changed | conversion s | max rel. loss diff after resume |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
