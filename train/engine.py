"""Building the draft and wrapping it for training: DeepSpeed (ZeRO 0-3) or plain torch.

Only the draft goes into `deepspeed.initialize`; the frozen target never does. The optimizer is a client
torch AdamW (a DeepSpeed-config optimizer would compile fused kernels for ~50 s on CPU), and batch size,
accumulation and clipping are written into the DeepSpeed config from the run config (one home per number).
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_

from train.config import TrainConfig


def lr_lambda(cfg: TrainConfig):  # noqa: ANN201 - a closure for LambdaLR
    """Linear warmup to lr, then cosine to lr * min_lr_ratio at max_steps, held there after.

    Not `transformers.get_cosine_with_min_lr_schedule_with_warmup`: its warmup starts at 0 (step 0 trains
    with lr 0, ours with lr/warmup) and past max_steps its cosine climbs back up; the cosine part is the
    same to the bit. Switching would change every run's losses (and resumed runs' schedules)."""
    warmup, total, floor = cfg.optim.warmup_steps, cfg.train.max_steps, cfg.optim.min_lr_ratio

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def deepspeed_config(cfg: TrainConfig, world: int) -> dict[str, Any]:
    ds = dict(cfg.deepspeed.config)
    ds["train_micro_batch_size_per_gpu"] = cfg.train.micro_batch_size
    ds["gradient_accumulation_steps"] = cfg.train.grad_accum
    ds["train_batch_size"] = cfg.train.micro_batch_size * cfg.train.grad_accum * world
    ds["gradient_clipping"] = cfg.optim.grad_clip
    # A torch AdamW with ZeRO is fine; DeepSpeed only asks us to say so.
    ds.setdefault("zero_allow_untested_optimizer", True)
    ds.setdefault("steps_per_print", 10**9)  # our own logging says what matters
    return ds


MUON = "deepspeed.runtime.zero.muon.muon_optimizer"


def import_muon_uncompiled() -> None:
    """Import DeepSpeed's Muon optimizer module with its torch.compile decorators left off.

    DeepSpeed imports that module from its ZeRO code (the optimizer check at initialize, ZeRO-1/2 gradient
    averaging) to ask `isinstance(optimizer, MuonWithAuxAdam)`, and the module wraps its update kernels in
    torch.compile at import: ~1.5 s of CPU per rank (cProfile of a one-rank start-up: 10.1 -> 8.7 s in all;
    /usr/bin/time: 10.1-10.7 -> 8.2-9.0 CPU-s),
    for an optimizer we never build (ours is the torch AdamW in Engine). Imported here first with a
    pass-through decorator, the module and its classes are DeepSpeed's own, and the kernels we never call
    are plain functions. A process that has already imported it keeps its copy."""
    if MUON in sys.modules:
        return
    from deepspeed.runtime import compiler

    real = compiler.compile
    compiler.compile = lambda: lambda fn: fn
    try:
        importlib.import_module(MUON)
    finally:
        compiler.compile = real


class Engine:
    """One interface over DeepSpeed and plain torch: forward, backward, step, save, load, gather."""

    def __init__(self, cfg: TrainConfig, draft: nn.Module, device: torch.device, world: int) -> None:
        self.cfg = cfg
        params = [p for p in draft.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        self.use_deepspeed = cfg.deepspeed.enabled
        if self.use_deepspeed:
            import deepspeed

            import_muon_uncompiled()
            self.ds_config = deepspeed_config(cfg, world)
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=draft, optimizer=opt, lr_scheduler=sched, config=self.ds_config
            )
            self.module: nn.Module = self.engine.module
        else:
            if world > 1:
                raise ValueError(
                    "deepspeed.enabled=false runs a single process; launch one rank or enable it"
                )
            self.module, self.optimizer, self.scheduler = draft.to(device), opt, sched
            self._micro = 0
            self._grad_norm = 0.0
            self._applied = True

    @property
    def zero_stage(self) -> int:
        return self.engine.zero_optimization_stage() if self.use_deepspeed else 0

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.engine(*args, **kwargs) if self.use_deepspeed else self.module(*args, **kwargs)

    def parameters(self):  # noqa: ANN201 - mirrors nn.Module.parameters
        return self.module.parameters()

    def train(self, mode: bool = True) -> None:
        (self.engine if self.use_deepspeed else self.module).train(mode)

    def backward(self, loss: torch.Tensor) -> None:
        if self.use_deepspeed:
            self.engine.backward(loss)
        else:
            (loss / self.cfg.train.grad_accum).backward()

    def at_boundary(self) -> bool:
        """Does this micro-batch end an accumulation (the next step() call is an optimizer step)?"""
        if self.use_deepspeed:
            return self.engine.is_gradient_accumulation_boundary()
        return (self._micro + 1) % self.cfg.train.grad_accum == 0

    def step(self, skip: bool = False) -> bool:
        """Called after every micro-batch; returns True at an accumulation boundary. With `skip` (every rank
        agreed the step's loss was non-finite) the boundary leaves weights, optimizer state and LR schedule
        exactly as they were and only drops the gradients."""
        if self.use_deepspeed:
            boundary = self.engine.is_gradient_accumulation_boundary()
            if boundary and skip:
                self._skip_deepspeed_step()
            else:
                self.engine.step()
            return boundary
        self._micro += 1
        if self._micro % self.cfg.train.grad_accum:
            return False
        clip = self.cfg.optim.grad_clip or float("inf")
        self._grad_norm = float("nan") if skip else float(clip_grad_norm_(self.module.parameters(), clip))
        self._applied = math.isfinite(self._grad_norm)  # a non-finite gradient is skipped like a loss
        if not self._applied:
            self.optimizer.zero_grad(set_to_none=True)
            return True
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def step_applied(self) -> bool:
        """Did the last boundary change the weights? False after a skip, including one DeepSpeed's ZeRO 1-3
        made by itself for a non-finite gradient norm (the same on every rank: their check is all-reduced)."""
        return self.engine.was_step_applied() if self.use_deepspeed else self._applied

    def _skip_deepspeed_step(self) -> None:
        """engine.step() still runs, so DeepSpeed's own counters and gradient buffers stay consistent."""
        opt = self.engine.optimizer
        if self.zero_stage == 0:
            # Stage 0 applies the client optimizer unconditionally. A no-op step flagged as an overflow makes
            # DeepSpeed take its fp16-overflow path: gradients zeroed, LR scheduler not stepped.
            had, before = hasattr(opt, "overflow"), getattr(opt, "overflow", None)
            opt.step = lambda *args, **kwargs: None
            opt.overflow = True
            try:
                self.engine.step()
            finally:
                del opt.step  # the instance attribute shadowed the class method
                if had:
                    opt.overflow = before
                else:
                    del opt.overflow
        else:
            # ZeRO 1-3 check the reduced gradient norm themselves: a non-finite loss on any rank made it
            # non-finite on every rank, so they discard the step and its gradient partitions.
            self.engine.step()
        if self.engine.was_step_applied():
            raise RuntimeError(
                "a step agreed to be skipped (non-finite loss) was applied by DeepSpeed; "
                "its overflow check is off for this configuration (optim.grad_clip=0?)"
            )

    def grad_norm(self) -> float:
        if self.use_deepspeed:
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        return self._grad_norm

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    # --- persistence --------------------------------------------------------------------------------
    def save(self, ckpt_dir: Path, tag: str) -> None:
        """Every rank calls this; each writes its own shard of model/optimizer state."""
        if self.use_deepspeed:
            self.engine.save_checkpoint(str(ckpt_dir), tag=tag, save_latest=False)
        else:
            (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "model": self.module.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "micro": self._micro,
                },
                ckpt_dir / tag / "torch_state.pt",
            )

    def load(self, ckpt_dir: Path, tag: str) -> None:
        if self.use_deepspeed:
            path, _ = self.engine.load_checkpoint(str(ckpt_dir), tag=tag)
            if path is None:
                raise FileNotFoundError(f"{ckpt_dir / tag}: DeepSpeed could not load this checkpoint")
        else:
            state = torch.load(ckpt_dir / tag / "torch_state.pt", map_location="cpu", weights_only=False)
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self._micro = state["micro"]

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The draft's full weights on every rank (ZeRO-3 shards are gathered first)."""
        if self.use_deepspeed and self.zero_stage == 3:
            import deepspeed

            params = list(self.module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {k: v.detach().clone().cpu() for k, v in self.module.state_dict().items()}
        return {k: v.detach().clone().cpu() for k, v in self.module.state_dict().items()}
