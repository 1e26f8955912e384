"""Shared test setup: offline hub and W&B, a warm DeepSpeed extension cache, the shipped tiny targets."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed compiles a shared-memory comm op on first use (~30 s); keep it in one cache for the session.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))

# pyproject's addopts run the suite on 3 pytest-xdist workers. Each worker gets its share of the cores (at least
# one thread) for torch and for the processes it starts; otherwise the workers' threads fight over every core.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

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


# --dist loadgroup: a worker takes a whole group at a time. Each test file is one group, so its module
# fixtures (a loaded target, a trained head) are built once; the vLLM engine tests share one group (one vLLM
# engine at a time on 2 cores, as before xdist). Groups start slowest first (measured durations, slowest
# file first), so the longest one does not start last while the other worker idles.
SHARED_GROUPS = {"test_vllm_": "vllm-engine", "test_laws_batch_vllm": "vllm-engine"}
SLOWEST_FIRST = (  # measured 2026-12-06 (--durations), slowest first
    "test_own_target_recipe", "test_resilience_elastic", "test_resilience_guards", "test_slurm_launch",
    "test_resilience_resume", "test_train_distributed", "test_add_an_algorithm", "test_peagle_docs",
    "test_sweep_multirun", "test_elastic_docs", "test_pipeline", "test_bad_input", "test_eval_lossless",
    "test_data_packing", "test_family_shapes", "test_ci_script", "test_eval_budget", "test_data_regenerate",
    "test_data_cache",
)  # fmt: skip


# Files whose tests share no fixture worth keeping on one worker (each test starts its own processes): their
# tests are scheduled one by one, so the workers share a long file instead of one worker carrying it alone.
ONE_BY_ONE = {"test_train_distributed", "test_bad_input", "test_pipeline", "test_docs_commands"}


def _group(item: pytest.Item) -> str:
    name = item.path.stem
    if name in ONE_BY_ONE:
        return item.nodeid
    return next((g for prefix, g in SHARED_GROUPS.items() if name.startswith(prefix)), name)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    # Stable: file order kept within a rank; a test scheduled one by one ranks as its file.
    items.sort(key=lambda it: rank.get(it.path.stem, rank.get(_group(it), len(rank))))
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_group(item)))
