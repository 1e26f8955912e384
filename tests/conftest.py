"""Shared test setup: offline hub and W&B, a warm DeepSpeed extension cache, the shipped tiny targets."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed compiles a shared-memory comm op on first use (~30 s); keep it in one cache for the session.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))

EMBEDDED = REPO / "data" / "embedded"
TINY_LLAMA = Path(os.environ.get("DRAFTFORGE_TEST_TARGET", EMBEDDED / "targets" / "tiny-llama"))
TINY_QWEN2 = EMBEDDED / "targets" / "tiny-qwen2"
PYDOCS_TRAIN = EMBEDDED / "corpus" / "pydocs_train.jsonl.gz"


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first documents of the shipped corpus: enough packed sequences for short runs, fast to tokenize."""
    out = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    with gzip.open(PYDOCS_TRAIN, "rt") as f, open(out, "w") as g:
        for i, line in enumerate(f):
            if i >= 16:
                break
            g.write(line)
    return out


def short_run_overrides(corpus: Path, out_dir: Path, steps: int = 12) -> list[str]:
    return [
        f"target.name_or_path={TINY_LLAMA}",
        f"data.train_files=[{corpus}]",
        f"data.valid_files=[{corpus}]",
        "data.seq_len=64",
        "train.micro_batch_size=4",
        f"train.max_steps={steps}",
        "train.log_every=1",
        "train.eval_every=0",
        "train.eval_batches=2",
        f"train.save_every={steps}",
        "train.progress=false",
        "optim.lr=3e-3",
        "optim.warmup_steps=2",
        f"output_dir={out_dir}",
        "logger=none",
    ]


def train_command(overrides: list[str], nproc: int = 2, launcher: str = "torchrun") -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "train", *overrides]
    if launcher == "deepspeed":
        # --no_local_rank: the plain launcher appends --local_rank, which Hydra would reject as an override.
        return ["deepspeed", "--no_local_rank", f"--num_gpus={nproc}", "--module", "train", *overrides]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "train", *overrides,
    ]  # fmt: skip


def run_train(
    overrides: list[str],
    nproc: int = 2,
    check: bool = True,
    launcher: str = "torchrun",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    cmd = train_command(overrides, nproc, launcher)
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"train exited {proc.returncode}\n--- stderr tail ---\n{proc.stderr[-4000:]}")
    return proc
