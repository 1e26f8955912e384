"""The one training loop. It calls `seam.forward_loss(draft, batch)` and never asks which stage or draft it
runs (train/loss_seam.py)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from data.cache_reader import CacheMismatch
from data.tracking import make_logger
from data.validate import DataValidationError
from train import distributed as dist
from train.checkpoint import TrainState, save_checkpoint, write_export
from train.config import ConfigError, TrainConfig, with_world
from train.draft_factory import build_draft
from train.drafts.registry import spec_for
from train.engine import Engine
from train.feature_source import load_tokenizer, open_source
from train.guards import SkipCounter, Watchdog, loop_hooks, resume_identity
from train.loss_seam import LossSeam
from train.preemption import (
    EXIT_ERROR,
    EXIT_NONFINITE,
    EXIT_PREEMPTED,
    EXIT_RESUME_REFUSED,
    STOP_SIGNALS,
    StopRun,
    StopSignals,
    request_requeue,
)
from train.resume import ResumeRefused, draft_vocab, implied_resume, resume


def config_fingerprint(cfg: TrainConfig) -> str:
    d = asdict(cfg)
    for key in ("resume", "output_dir", "run_name"):
        d.pop(key, None)
    d.pop("logger", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_run_dir(resume: bool, run_dir: Path) -> None:
    if not resume and (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise FileExistsError(
            f"{run_dir} already holds checkpoints: pass resume=true to continue it, or choose another run_name"
        )


@dataclass(frozen=True)
class RunPlan:
    """What the trainer derives from the config at start-up; the typed config itself is never changed."""

    resume: bool  # resume=true, or implied by a SLURM requeue
    max_steps: int  # train.max_steps, or the steps that reach the token budget
    planned_tokens: int  # target tokens (padding excluded, all ranks) those steps read

    def applied_to(self, cfg: TrainConfig) -> TrainConfig:
        """A copy of `cfg` carrying these values, for the engine's schedule and the resume logic."""
        return replace(cfg, resume=self.resume, train=replace(cfg.train, max_steps=self.max_steps))


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        # First: a preemption warning during the slow set-up must set the flag, not kill the process.
        self.stop = StopSignals()
        self.stop.install()
        self.device = dist.init(cfg.train.device, cfg.train.collective_timeout_s)
        self.rank, self.world = dist.rank(), dist.world_size()
        cfg = with_world(cfg, self.world)  # grad_accum from train.global_batch_size, when set
        resuming = implied_resume(cfg)
        self.run_dir = Path(cfg.output_dir)
        _check_run_dir(resuming, self.run_dir)
        # The data is built (and bad records refused) before the multi-GB target load, from its tokenizer.
        data = open_source(cfg.data, load_tokenizer(cfg.target))
        self.target = cfg.target.load(self.device)
        torch.manual_seed(cfg.train.seed)  # identical draft init on every rank
        self.draft = build_draft(cfg, self.target, data)
        self.head_config = self.draft.config
        # Counted before the engine exists: ZeRO-3 partitions parameters in place (numel() becomes 0).
        self.trainable_params = sum(p.numel() for p in self.draft.parameters() if p.requires_grad)
        self.seam = LossSeam(cfg, self.target, self.rank, self.world, data)
        self.plan = self._plan(cfg, resuming)
        # What the rest of the run reads: the user's config with the planned values (cfg is left as given).
        self.cfg = cfg = self.plan.applied_to(cfg)
        self.engine = Engine(cfg, self.draft, self.device, self.world)
        self.fingerprint = {**self.target.fingerprint(), "config_fingerprint": config_fingerprint(cfg)}
        loop = cfg.train
        self.identity = resume_identity(
            self.fingerprint,
            draft_vocab(self.head_config),
            self.world,
            loop.micro_batch_size,
            loop.grad_accum,
        )
        loaded, resumed_from = resume(cfg, self.engine, self.run_dir, self.identity, self.fingerprint)
        self.state = loaded or TrainState()
        self.skips = SkipCounter(loop.max_consecutive_skips, total=self.state.skipped_steps)
        self.watchdog = Watchdog(loop.watchdog_s)
        self.hooks = loop_hooks()  # no-ops unless a test set DRAFTFORGE_TEST_FAULTS
        if resumed_from is None:
            torch.manual_seed(cfg.train.seed * 1000 + self.rank)  # per-rank noise streams
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        self.logger = make_logger(
            cfg.logger, self.run_dir, asdict(cfg), dist.is_main(), run_id=self.state.wandb_run_id
        )
        self.state.wandb_run_id = self.logger.run_id
        n_params = self.trainable_params
        dist.print0(
            f"[train] {cfg.draft.name} draft, {n_params / 1e6:.2f}M trainable params, target "
            f"{cfg.target.name_or_path} ({sum(p.numel() for p in self.target.parameters()) / 1e6:.2f}M, frozen); "
            f"{self.world} rank(s), ZeRO-{self.engine.zero_stage}, {self.plan.max_steps} steps, "
            f"{self.plan.planned_tokens / 1e6:.2f}M target tokens (padding excluded)"
            + (f"; resumed from {resumed_from}" if resumed_from else "")
        )
        shared = spec_for(cfg.draft.name).frozen_shared_params(self.target)
        dist.print0(f"[train] draft uses {shared / 1e6:.2f}M frozen target parameters (embedding / LM head)")
        self.logger.summary({"draft/trainable_params": n_params, "draft/frozen_shared_params": shared})

    # --- helpers ------------------------------------------------------------------------------------
    def _step_tokens(self, step: int) -> int:
        """Target tokens (padding excluded, all ranks) of optimizer step `step`: the data order is a pure
        function of the micro-batch index, so every rank counts every rank's tokens without a collective."""
        accum = self.seam.cfg.train.grad_accum
        return self.seam.step_tokens(range(step * accum, (step + 1) * accum))

    def _plan(self, cfg: TrainConfig, resume: bool) -> RunPlan:
        """Steps that reach train.max_tokens (or data.max_tokens, one pass over the budgeted data)."""
        loop, data = cfg.train, cfg.data
        if loop.max_tokens is None and data.max_tokens is None:
            tokens = sum(self._step_tokens(s) for s in range(loop.max_steps))
            return RunPlan(resume, loop.max_steps, tokens)
        budget = loop.max_tokens if loop.max_tokens is not None else data.max_tokens
        assert budget is not None
        cap = loop.max_steps if loop.max_tokens is None else None
        steps, total = 0, 0
        while total < budget and (cap is None or steps < cap):
            total += self._step_tokens(steps)
            steps += 1
        return RunPlan(resume, steps, total)

    def _reduce(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        keys = sorted(sums)
        totals = dist.all_reduce_sum([float(sums[k]) for k in keys], self.device)
        return dict(zip(keys, totals, strict=True))

    @staticmethod
    def _ratios(t: dict[str, float], prefix: str) -> dict[str, float]:
        """Every "<name>_sum" divided by its count: "count", or "<group>/count" for "<group>/<name>_sum"."""
        out = {}
        for key, total in t.items():
            if not key.endswith("_sum"):
                continue
            group = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
            out[f"{prefix}/{key[: -len('_sum')]}"] = total / max(t.get(f"{group}count", 0.0), 1.0)
        return out

    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        if dist.is_main():
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.engine.train(False)
        sums: dict[str, torch.Tensor] = {}
        for batch in self.seam.valid_batches(self.cfg.train.eval_batches):
            for k, v in self.seam.forward_loss(self.engine, batch, training=False).stats.items():
                sums[k] = sums.get(k, 0) + v
        self.engine.train(True)
        if not sums:
            return {}
        return self._ratios(self._reduce(sums), "valid")

    # --- the loop -----------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg, st = self.cfg, self.state
        self.engine.train(True)
        bar = tqdm(
            total=self.plan.max_steps,
            initial=st.step,
            desc="train",
            disable=not (cfg.train.progress and dist.is_main()),
            dynamic_ncols=True,
        )
        window: dict[str, torch.Tensor] = {}
        t0, tokens0 = time.perf_counter(), st.tokens_seen
        last: dict[str, Any] = {}
        pending: dict[str, torch.Tensor] = {}  # this step's stats: kept only if the step is not skipped
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.watchdog.arm()
        t_step = time.perf_counter()
        while st.step < self.plan.max_steps:
            self.hooks.micro_batch(self.rank, st.step + 1, partial(self.seam.sampler.indices, st.micro_index))
            out = self.seam.forward_loss(self.engine, self.seam.train_batch(st.micro_index))
            st.micro_index += 1
            loss = self.hooks.loss(out.loss, self.rank, st.step + 1)
            bad |= ~torch.isfinite(loss.detach())  # a device flag: read once per step, in the agreement below
            self.engine.backward(loss)
            for k, v in out.stats.items():
                pending[k] = pending.get(k, 0) + v
            if not self.engine.at_boundary():
                self.engine.step()
                continue
            # One tiny all_reduce per step: every rank skips, and stops, after the same step.
            skip, stop = dist.any_rank([bool(bad), self.stop.requested], self.device)
            self.engine.step(skip=skip)
            skip = not self.engine.step_applied()  # also a non-finite gradient that DeepSpeed refused
            bad.zero_()
            if not skip:
                for k, v in pending.items():
                    window[k] = window.get(k, 0) + v
                st.tokens_seen += self._step_tokens(st.step)
            pending = {}
            st.step += 1
            now = time.perf_counter()
            st.train_seconds, t_step = st.train_seconds + (now - t_step), now
            bar.update(1)
            self._count_skip(skip)
            self.hooks.after_step()
            final = st.step == self.plan.max_steps
            stop = stop and not final  # a signal at the last step: finish, export and exit 0 instead
            if st.step % cfg.train.log_every == 0 or final:
                elapsed = time.perf_counter() - t0
                metrics = {
                    **self._ratios(self._reduce(window), "train"),
                    "train/lr": self.engine.lr(),
                    "train/grad_norm": self.engine.grad_norm(),
                    "train/tokens_per_s": (st.tokens_seen - tokens0) / max(elapsed, 1e-9),
                    "train/tokens_seen": st.tokens_seen,
                    "train/skipped_steps": st.skipped_steps,
                    "step": st.step,
                }
                window, t0, tokens0 = {}, time.perf_counter(), st.tokens_seen
                if (cfg.train.eval_every and st.step % cfg.train.eval_every == 0) or final:
                    metrics.update(self.validate())
                self.logger.log(metrics, step=st.step)
                self._write_metrics(metrics)
                bar.set_postfix(
                    loss=f"{metrics.get('train/loss', math.nan):.3f}",
                    top1=f"{metrics.get('train/top1_agreement', math.nan):.3f}",
                )
                last = metrics
            if (cfg.train.save_every and st.step % cfg.train.save_every == 0) or final or stop:
                self.save()
            if stop:
                bar.close()
                self._stop_for_signal()
            self.watchdog.arm()
        self.watchdog.disarm()
        bar.close()
        export_dir = self.export()
        self.logger.summary({k: v for k, v in last.items() if isinstance(v, float)})
        self.logger.finish()
        return {"export_dir": str(export_dir), "state": asdict(st), **last}

    def save(self) -> None:
        st = self.state
        self.watchdog.arm()  # a save gets the full watchdog period of its own
        save_checkpoint(
            self.engine,
            self.run_dir,
            st,
            self.fingerprint,
            self.cfg.train.keep_checkpoints,
            self.identity,
            during_save=lambda: self.hooks.during_save(self.rank, st.step),
        )

    def _count_skip(self, skipped: bool) -> None:
        must_stop = self.skips.record(skipped)
        self.state.skipped_steps = self.skips.total
        if not skipped:
            return
        # Every rank prints: the line shows that the ranks skipped the same step together.
        print(
            f"[guard] rank {self.rank}: step {self.state.step} skipped, non-finite loss or gradient "
            f"({self.skips.in_a_row} in a row, {self.skips.total} in total)",
            file=sys.stderr,
            flush=True,
        )
        if must_stop:
            self.watchdog.disarm()
            self.logger.finish()
            raise StopRun(
                EXIT_NONFINITE,
                f"{self.skips.in_a_row} non-finite steps in a row (train.max_consecutive_skips); "
                "the last good checkpoint is kept",
            )

    def _stop_for_signal(self) -> None:
        """All ranks agreed to stop and have saved; requeue once under SLURM, then exit EXIT_PREEMPTED."""
        self.watchdog.disarm()
        self.logger.finish()  # the W&B run is closed cleanly, so the resumed job continues it
        why = self.stop.received or "a stop signal on another rank"
        if dist.is_main():
            requeue = request_requeue(self.cfg.train.requeue, self.cfg.train.max_requeues)
            print(f"[preempt] {requeue}", file=sys.stderr, flush=True)
        # Nobody exits before the requeue is in: under `srun --kill-on-bad-exit` the first rank to exit
        # takes the others down with it.
        dist.barrier()
        raise StopRun(EXIT_PREEMPTED, f"{why}: checkpoint saved at step {self.state.step}")

    def export(self) -> Path:
        meta = {
            **self.fingerprint,
            "stage": self.cfg.stage.name,
            "data": self.cfg.data.name,
            "steps": self.state.step,
            "tokens_seen": self.state.tokens_seen,
            "train_seconds": round(self.state.train_seconds, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        out = write_export(self.engine, self.head_config, self.run_dir / "export", meta)
        dist.print0(f"[train] draft export written to {out}")
        return out


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train; a documented stop ends the process with its exit code (train/preemption.py)."""
    try:
        return Trainer(cfg).fit()
    except StopRun as stop:
        # Python restores default handlers at shutdown, and a late second signal would then kill the process
        # with -SIG instead of the documented code; ignored signals stay ignored.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        print(f"[train] rank {dist.rank()}: {stop}; exit {stop.code}", file=sys.stderr, flush=True)
        if dist.world_size() > 1:
            # Everything is saved and closed. Interpreter shutdown with a live process group can spin until
            # SLURM's KillWait SIGKILLs it (seen under srun), turning the documented code into a kill.
            sys.stdout.flush()
            os._exit(stop.code)
        raise SystemExit(stop.code) from None
    except ResumeRefused as err:
        dist.print0(f"error: {err}", file=sys.stderr)  # every rank refuses alike: one line, from rank 0
        if dist.world_size() > 1:
            dist.barrier()
            sys.stdout.flush()
            os._exit(EXIT_RESUME_REFUSED)
        raise SystemExit(EXIT_RESUME_REFUSED) from None
    except (DataValidationError, CacheMismatch, ConfigError) as err:
        if dist.world_size() <= 1:
            raise  # train/__main__.py prints it and exits 2
        # Every rank reads the same data and fails the same way: rank 0 prints the one report, the others
        # wait for it (else the launcher may kill rank 0 mid-print when a quiet rank exits first), all exit 2.
        dist.print0(f"error: {err}", file=sys.stderr)
        dist.barrier()
        sys.stdout.flush()
        os._exit(2)
    except Exception:
        if dist.world_size() <= 1:
            raise
        # Exit at once instead of unwinding through interpreter shutdown, where DeepSpeed and process-group
        # teardown can block on the peers; our peers fail fast when our sockets close, and launchers
        # (torchrun, srun --kill-on-bad-exit) stop the rest.
        print(f"[train] rank {dist.rank()} failed:", file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_ERROR)
