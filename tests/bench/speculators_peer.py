"""The peer side of tests/bench/bench_vs_speculators.py: runs under speculators' own python (the vLLM venv),
never imported by our packages. Two commands:

    PEER_PY speculators_peer.py prepare --cache DIR --vocab FILE --target DIR --out DIR
        our hidden-state cache (python -m data cache, layers 1,2,3,-1) and draft vocabulary -> the data folder
        speculators 0.9's trainer reads offline: an Arrow dataset (input_ids, loss_mask, seq_len),
        hidden_states/hs_<i>.safetensors and d2t-<size>.npy / t2d-<size>.npy.
    PEER_PY -m torch.distributed.run --nproc_per_node 2 speculators_peer.py train --result DIR -- ARGS...
        speculators' own `speculators train` entry (TrainConfig.resolve + speculators.train.cli.main) with ARGS,
        on CPU ranks, each rank writing the tokens and step milliseconds its trainer logged to DIR/rank<r>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def prepare(cache: Path, vocab: Path, target: Path, out: Path) -> None:
    import numpy as np
    import torch
    from datasets import Dataset
    from safetensors import safe_open
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((cache / "manifest.json").read_text())
    layers = manifest["layers"]
    if layers[-1] != manifest["num_hidden_layers"]:
        sys.exit(f"{cache}: the cache's last layer must be the final-norm state (-1); it holds {layers}")
    with safe_open(str(vocab), "pt") as f:
        d2t, t2d = f.get_tensor("d2t").long(), f.get_tensor("t2d").bool()
    # speculators stores d2t as offsets (target id = draft id + d2t[draft id]); ours holds the target ids.
    np.save(out / f"d2t-{len(d2t)}.npy", (d2t - torch.arange(len(d2t))).numpy())
    np.save(out / f"t2d-{len(d2t)}.npy", t2d.numpy())
    # The target's final RMSNorm weight: speculators applies the verifier's norm to the last hidden state it
    # is given (it expects the last decoder layer's output, before the norm), while our cache holds the state
    # after the norm, y = w * x / rms(x). Giving it y / w = x / rms(x), whose rms is 1, makes its norm return
    # y exactly (up to eps): both sides train against the same target distribution.
    with safe_open(str(target / "model.safetensors"), "pt") as f:
        norm_w = f.get_tensor("model.norm.weight").float()
    hs_dir = out / "hidden_states"
    hs_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[Any]] = {"input_ids": [], "loss_mask": [], "seq_len": []}
    index = 0
    for shard in manifest["splits"]["train"]["shards"]:
        with safe_open(str(cache / "train" / shard["file"]), "pt") as f:
            offsets = f.get_tensor("offsets")
            ids, mask = f.get_tensor("input_ids").long(), f.get_tensor("loss_mask").bool()
            feats = [f.get_tensor(f"layer_{i}").float() for i in layers]
        feats[-1] = feats[-1] / norm_w
        for r in range(len(offsets) - 1):
            a, b = int(offsets[r]), int(offsets[r + 1])
            hs = torch.stack([x[a:b] for x in feats], dim=1).contiguous()  # [seq, 4, hidden]
            save_file(
                {"hidden_states": hs, "token_ids": ids[a:b].clone()}, str(hs_dir / f"hs_{index}.safetensors")
            )
            rows["input_ids"].append(ids[a:b].tolist())
            rows["loss_mask"].append(mask[a:b].tolist())
            rows["seq_len"].append(b - a)
            index += 1
    Dataset.from_dict(rows).with_format("torch").save_to_disk(str(out))
    print(json.dumps({"rows": index, "tokens": sum(rows["seq_len"]), "longest": max(rows["seq_len"])}))


def cpu_shim() -> None:
    """speculators 0.9's trainer assumes an accelerator (CUDA device indices, torch.accelerator calls, NCCL-style
    init with device_id, pinned loader memory). On CPU ranks: the accelerator is the CPU, its device is "cpu",
    gloo needs no device_id, nothing is pinned, and synchronising is a no-op (CPU ops have finished when they
    return). The model, data, loss and optimizer code run unchanged."""
    import speculators.train.dataloader as sloader
    import speculators.train.trainer as strainer
    import torch
    import torch.distributed as dist

    torch.accelerator.current_accelerator = lambda check_available=False: torch.device("cpu")
    torch.accelerator.is_available = lambda: False  # what is_available() guards (memory stats) stays off
    torch.accelerator.set_device_index = lambda index: None
    torch.accelerator.synchronize = lambda device=None: None
    if not hasattr(torch.cpu, "empty_cache"):  # called once after training, on "the" accelerator's module
        torch.cpu.empty_cache = lambda: None
    init = dist.init_process_group
    dist.init_process_group = lambda backend=None, device_id=None, **kw: init("gloo", **kw)
    strainer.get_local_rank = lambda: "cpu"  # model.to(...) and batch.to(...) take it as the device
    loader = sloader.DataLoader  # pinned memory exists only beside an accelerator: off, as on any CPU run
    sloader.DataLoader = lambda *a, **kw: loader(*a, **{**kw, "pin_memory": False})


class StepLog(logging.Handler):
    """Collects the per-step profile speculators' trainer logs on every rank (log_freq=1): its real tokens
    (document_ids != -1) and step milliseconds (batch fetch to optimizer step)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.ms, self.steps = 0, 0.0, 0
        self.last: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg
        if isinstance(msg, dict) and isinstance(msg.get("profile"), dict):
            prof = msg["profile"]
            self.tokens += round(prof["tokens_per_s"] * prof["step_ms"] / 1000)
            self.ms += prof["step_ms"]
            self.steps += 1
            self.last = msg.get("train", {})


def train(result: Path, argv: list[str]) -> None:
    import os

    cpu_shim()
    import speculators.train.cli as scli
    from speculators.train.config import TrainConfig

    log = StepLog()
    setup = scli.setup_metric_logger

    def setup_then_listen(*a: Any, **kw: Any) -> None:  # its dictConfig replaces the logger's handlers
        setup(*a, **kw)
        logging.getLogger("speculators.metrics").addHandler(log)

    scli.setup_metric_logger = setup_then_listen
    scli.main(TrainConfig.resolve(argv))
    rank = int(os.environ.get("RANK", "0"))
    result.mkdir(parents=True, exist_ok=True)
    out = {"tokens": log.tokens, "ms": log.ms, "steps": log.steps, "last": log.last}
    (result / f"rank{rank}.json").write_text(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prepare")
    pr.add_argument("--cache", type=Path, required=True)
    pr.add_argument("--vocab", type=Path, required=True)
    pr.add_argument("--target", type=Path, required=True)
    pr.add_argument("--out", type=Path, required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--result", type=Path, required=True)
    tr.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.cmd == "prepare":
        prepare(a.cache, a.vocab, a.target, a.out)
    else:
        train(a.result, [x for x in a.args if x != "--"])


if __name__ == "__main__":
    main()
