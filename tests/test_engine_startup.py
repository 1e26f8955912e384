"""A DeepSpeed rank's start-up does not compile the Muon optimizer it never uses (train/engine.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# In a fresh process (nothing imported before): the real Engine over ZeRO-2 on a world of one, then what
# DeepSpeed's Muon module holds. torch.compile marks what it wraps with _torchdynamo_orig_callable.
PROBE = """
import sys, torch
from hydra import compose, initialize_config_dir
from data.paths import CONF_DIR, register_resolvers
from train import distributed
from train.config import to_typed
from train.engine import MUON, Engine

register_resolvers()
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = to_typed(compose("train", overrides=["deepspeed=zero2", "logger=none"]))
assert MUON not in sys.modules
dev = distributed.init("cpu")
engine = Engine(cfg, torch.nn.Linear(8, 8), dev, 1)
loss = engine(torch.ones(2, 8)).sum()
engine.backward(loss)
engine.step()
import deepspeed.runtime.compiler as compiler
import deepspeed.runtime.zero.muon.original_muon as muon
wrapped = [n for n in ("zeropower_via_newtonschulz5", "muon_update") if hasattr(getattr(muon, n), "_torchdynamo_orig_callable")]
print("WRAPPED", wrapped, "RESTORED", compiler.compile() is torch.compile)
"""


def test_a_deepspeed_rank_imports_muon_without_compiling_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The module DeepSpeed's ZeRO code asks about is its own, with the kernels left as plain functions, and
    # DeepSpeed's compile helper is back to torch.compile for everything else.
    assert "WRAPPED [] RESTORED True" in proc.stdout, proc.stdout[-2000:]
