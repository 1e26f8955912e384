"""The only place that reads RANK / WORLD_SIZE / LOCAL_RANK (and SLURM's job variables). Everything else asks
these getters."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from data.target_io import pick_device


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def device(requested: str = "auto") -> torch.device:
    """This rank's device: 'auto' = the CUDA device of its local rank when there is one (data.target_io)."""
    return pick_device(requested, local_rank())


def slurm_job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID")


def slurm_restart_count() -> int:
    """How many times SLURM has requeued this job (0 on the first run, or outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def _export_submitit_env() -> None:
    """Under Hydra's submitit launcher every SLURM task is one rank, but nobody sets RANK and friends:
    submitit derives them (and a job-specific MASTER_PORT) from the SLURM variables."""
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export()


def init(requested_device: str = "auto", timeout_s: int = 600) -> torch.device:
    """Join the process group: nccl on CUDA, gloo on CPU. A plain `python -m train` runs as a world of one.

    `timeout_s` bounds every collective: a rank whose peer died or hangs fails after it instead of waiting
    forever (gloo raises; NCCL's watchdog aborts the process)."""
    if "RANK" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "local"):
        _export_submitit_env()
    if "RANK" not in os.environ:
        # DeepSpeed needs a process group even for one process; give it a private rendezvous. Port 0: the
        # store binds whatever port the OS gives it. A port picked free beforehand and bound later could be
        # taken in between (seen 2026-12-06: EADDRINUSE with parallel test workers), and no other rank connects.
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="0")
    dev = device(requested_device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        import deepspeed

        deepspeed.init_distributed(
            dist_backend="nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s)
        )
    return dev


def barrier() -> None:
    if dist.is_initialized() and world_size() > 1:
        dist.barrier()


def print0(*args: object, **kwargs: object) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)  # type: ignore[call-overload]


def all_reduce_sum(values: list[float], dev: torch.device) -> list[float]:
    """Sum a few scalars over ranks in one collective (counts are summed, then divided: rule 7)."""
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    if dist.is_initialized() and world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(flags: list[bool], dev: torch.device) -> list[bool]:
    """For each flag: is it set on any rank? One small all_reduce, so every rank takes the same branch."""
    t = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=dev)
    if dist.is_initialized() and world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def all_gather_object(obj: object) -> list[object]:
    if dist.is_initialized() and world_size() > 1:
        out: list[object] = [None] * world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def broadcast_object(obj: object) -> object:
    if dist.is_initialized() and world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj
