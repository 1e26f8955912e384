"""The one training loop. It calls `stage.forward_loss(draft, batch)` and never branches on the stage."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from train import distributed as dist
from train.checkpoint import TrainState, export_draft, latest_checkpoint, load_checkpoint, save_checkpoint
from train.config import TrainConfig
from train.draft_factory import build_draft
from train.engine import Engine
from train.stages import STAGES
from train.tracking import make_logger


def config_fingerprint(cfg: TrainConfig) -> str:
    d = asdict(cfg)
    for key in ("resume", "output_dir", "run_name"):
        d.pop(key, None)
    d.pop("logger", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    if not cfg.resume and (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise FileExistsError(
            f"{run_dir} already holds checkpoints: pass resume=true to continue it, or choose another run_name"
        )


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.device = dist.init(cfg.train.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.run_dir = Path(cfg.output_dir)
        _check_run_dir(cfg, self.run_dir)
        self.target = cfg.target.load(self.device)
        torch.manual_seed(cfg.train.seed)  # identical draft init on every rank
        self.draft = build_draft(cfg, self.target)
        self.head_config = self.draft.config
        # Counted before the engine exists: ZeRO-3 partitions parameters in place (numel() becomes 0).
        self.trainable_params = sum(p.numel() for p in self.draft.parameters() if p.requires_grad)
        self.stage = STAGES[cfg.stage.name](cfg, self.target, self.rank, self.world)
        tokens_per_step = self.stage.tokens_per_micro_batch * cfg.train.grad_accum * self.world
        if cfg.data.max_tokens is not None:
            cfg.train.max_steps = min(cfg.train.max_steps, math.ceil(cfg.data.max_tokens / tokens_per_step))
        self.tokens_per_step = tokens_per_step
        self.engine = Engine(cfg, self.draft, self.device, self.world)
        self.fingerprint = {**self.target.fingerprint(), "config_fingerprint": config_fingerprint(cfg)}
        self.state = TrainState()
        resumed_from = None
        if cfg.resume:
            ckpt = latest_checkpoint(self.run_dir)
            if ckpt is not None:
                self.state = load_checkpoint(self.engine, ckpt)
                resumed_from = ckpt
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
            f"{self.world} rank(s), ZeRO-{self.engine.zero_stage}, {tokens_per_step} tokens/step, "
            f"{cfg.train.max_steps} steps" + (f"; resumed from {resumed_from}" if resumed_from else "")
        )
        self.logger.summary({"draft/trainable_params": n_params})

    # --- helpers ------------------------------------------------------------------------------------
    def _reduce(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        keys = sorted(sums)
        totals = dist.all_reduce_sum([float(sums[k]) for k in keys], self.device)
        return dict(zip(keys, totals, strict=True))

    @staticmethod
    def _ratios(t: dict[str, float], prefix: str) -> dict[str, float]:
        n = max(t.get("count", 0.0), 1.0)
        return {
            f"{prefix}/loss": t["loss_sum"] / n,
            f"{prefix}/feature_loss": t["feature_loss_sum"] / n,
            f"{prefix}/token_ce": t["token_loss_sum"] / n,
            f"{prefix}/top1_agreement": t["top1_sum"] / n,
        }

    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        if dist.is_main():
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.engine.train(False)
        sums: dict[str, torch.Tensor] = {}
        for batch in self.stage.valid_batches(self.cfg.train.eval_batches):
            for k, v in self.stage.forward_loss(self.engine, batch, training=False).stats.items():
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
            total=cfg.train.max_steps,
            initial=st.step,
            desc="train",
            disable=not (cfg.train.progress and dist.is_main()),
            dynamic_ncols=True,
        )
        window: dict[str, torch.Tensor] = {}
        t0, tokens0 = time.perf_counter(), st.tokens_seen
        last: dict[str, Any] = {}
        while st.step < cfg.train.max_steps:
            out = self.stage.forward_loss(self.engine, self.stage.train_batch(st.micro_index))
            st.micro_index += 1
            self.engine.backward(out.loss)
            stepped = self.engine.step()
            for k, v in out.stats.items():
                window[k] = window.get(k, 0) + v
            if not stepped:
                continue
            st.step += 1
            st.tokens_seen += self.tokens_per_step
            bar.update(1)
            final = st.step == cfg.train.max_steps
            if st.step % cfg.train.log_every == 0 or final:
                elapsed = time.perf_counter() - t0
                metrics = {
                    **self._ratios(self._reduce(window), "train"),
                    "train/lr": self.engine.lr(),
                    "train/grad_norm": self.engine.grad_norm(),
                    "train/tokens_per_s": (st.tokens_seen - tokens0) / max(elapsed, 1e-9),
                    "train/tokens_seen": st.tokens_seen,
                    "step": st.step,
                }
                window, t0, tokens0 = {}, time.perf_counter(), st.tokens_seen
                if (cfg.train.eval_every and st.step % cfg.train.eval_every == 0) or final:
                    metrics.update(self.validate())
                self.logger.log(metrics, step=st.step)
                self._write_metrics(metrics)
                bar.set_postfix(
                    loss=f"{metrics['train/loss']:.3f}", top1=f"{metrics['train/top1_agreement']:.3f}"
                )
                last = metrics
            if (cfg.train.save_every and st.step % cfg.train.save_every == 0) or final:
                save_checkpoint(self.engine, self.run_dir, st, self.fingerprint, cfg.train.keep_checkpoints)
        bar.close()
        export_dir = self.export()
        self.logger.summary({k: v for k, v in last.items() if isinstance(v, float)})
        self.logger.finish()
        return {"export_dir": str(export_dir), "state": asdict(st), **last}

    def export(self) -> Path:
        meta = {
            **self.fingerprint,
            "stage": self.cfg.stage.name,
            "data": self.cfg.data.name,
            "steps": self.state.step,
            "tokens_seen": self.state.tokens_seen,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        out = export_draft(self.engine, self.head_config, self.run_dir / "export", meta)
        dist.print0(f"[train] draft export written to {out}")
        return out


def run(cfg: TrainConfig) -> dict[str, Any]:
    return Trainer(cfg).fit()
