"""The sections of the run configuration that the rest of `train` reads: stage, optimizer, loop, DeepSpeed
(the draft's section is its algorithm's own config class, train/drafts/<name>/config.py). A leaf module (it imports nothing from train), so that draft specs and objectives can name these
types without importing `train.config`, which imports them: no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageConfig:
    """A training stage (conf group `stage/`): what data it reads and which losses it weighs."""

    name: str = "pretrain"  # a label (run names, export metadata): pretrain | sft | distill
    feature_weight: float = 1.0  # weight of the feature-regression (smooth L1) loss
    token_weight: float = 0.1  # weight of the token cross-entropy to the target's distribution
    data_ce_weight: float = 0.0  # weight of plain cross-entropy on the data's next tokens
    divergence: str = "soft_ce"  # token loss vs the target: soft_ce | forward_kl | reverse_kl | tvd
    temperature: float = 1.0  # temperature both distributions are compared at
    top_k: int | None = None  # compare only over the target's top-k tokens (None = full vocabulary)
    init_from: str | None = None  # a draft export to start from (fresh optimizer and schedule)


@dataclass
class OptimConfig:
    """AdamW + warmup/cosine schedule. The DeepSpeed config interpolates grad_clip from here."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps


@dataclass
class LoopConfig:
    """Batching, length and cadence of the training loop (`train.*`)."""

    micro_batch_size: int = 8  # sequences per rank per forward
    grad_accum: int = 1  # micro-batches per optimizer step
    # Sequences per optimizer step over all ranks; when set, grad_accum = this / (micro_batch_size x ranks),
    # so the same command keeps its batch (and sample order) on any world size (docs/elastic.md).
    global_batch_size: int | None = None
    max_steps: int = 200  # optimizer steps
    # Stop once the draft has trained on this many target tokens (padding excluded, all ranks); replaces
    # max_steps, so stages and recipes can be given equal budgets whatever their batch shapes.
    max_tokens: int | None = None
    log_every: int = 10
    eval_every: int = 100  # validation loss every N steps (0 = only at the end)
    eval_batches: int = 8  # validation micro-batches per rank
    save_every: int = 100  # resumable checkpoint every N steps (and always at the end)
    keep_checkpoints: int = 2  # newest resumable checkpoints kept on disk
    seed: int = 0
    device: str = "auto"  # auto = cuda:LOCAL_RANK when CUDA is available, else cpu
    progress: bool = True  # tqdm bar on rank 0
    max_consecutive_skips: int = 5  # stop (exit 76) after this many non-finite steps in a row (0 = never)
    collective_timeout_s: int = 600  # a collective waiting longer than this fails (dead or hung peer)
    watchdog_s: int = 1800  # no step or save done for this long: dump stacks, exit 1 (0 = off)
    requeue: bool = True  # on a stop signal under SLURM, rank 0 runs `scontrol requeue` after saving
    max_requeues: int = 10  # ... unless SLURM_RESTART_COUNT has reached this


@dataclass
class DeepSpeedConfig:
    """ZeRO stage, precision and communication only (conf group `deepspeed/`); batch sizes, clipping and the
    optimizer come from the run config so every number has one home."""

    enabled: bool = True  # False = plain torch (single process), for debugging
    config: dict[str, Any] = field(default_factory=dict)  # passed to deepspeed.initialize
