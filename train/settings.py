"""The sections of the run configuration that the rest of `train` reads: draft, stage, optimizer, loop,
DeepSpeed. A leaf module (it imports nothing from train), so that draft specs and objectives can name these
types without importing `train.config`, which imports them: no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DraftConfig:
    """The draft architecture (conf group `draft/`). None = take the value from the target."""

    name: str = "eagle"  # registry name: eagle | eagle3 | scylla | medusa | dense | dflash
    num_layers: int = 1  # decoder layers (eagle/eagle3/scylla/dense) or residual blocks per head (medusa)
    hidden_size: int | None = None  # dense only: width of the stand-alone LM; None = the target's
    intermediate_size: int | None = None  # MLP width; None = the target's
    num_heads: int | None = None  # attention heads; None = the target's
    num_kv_heads: int | None = None  # key/value heads; None = the target's
    feature_noise: float = 0.0  # half-width of uniform noise added to input features in training (EAGLE: 0.1)
    feature_layers: list[int] | None = None  # eagle3/scylla: target hidden_states fused; None = low/mid/high
    layout: str = "eagle3"  # eagle3/scylla: eagle3 (the published layout SGLang/vLLM load) | draftforge
    # eagle3/scylla, layout=eagle3 only: speculators' default EAGLE-3 layout (both true there; vLLM loads both)
    norm_before_residual: bool = False  # layer 0's residual is the normed feature, not the raw one
    norm_before_fc: bool = False  # one RMSNorm over the fused target features before fc
    # eagle3/scylla: layer 0 starts attending to the current position (k = q at init); the token just drafted
    # reaches an eagle3-layout head only through that attention. Weights only: export/serving unchanged.
    self_attend_init: bool = False
    first_layer_input_norm: bool = False  # eagle: False = the original EAGLE-1/2 layout (engines load it)
    fc_bias: bool = False  # eagle: fc has a bias; False = what vLLM/SGLang load (true: not servable)
    draft_vocab_size: int | None = None  # eagle3/scylla: reduced LM-head vocabulary; None = the target's
    vocab_path: str | None = None  # eagle3/scylla: d2t/t2d map (python -m data.draft_vocab); None = build
    ttt_steps: int = 1  # eagle3/scylla: training-time-test unroll depth (1 = no unrolling)
    ttt_decay: float = 0.8  # eagle3/scylla/medusa: loss weight of unroll step / head j is decay**j
    medusa_heads: int = 4  # medusa: K heads proposing tokens t+2 .. t+K+1
    share_lm_head: bool = True  # medusa: heads reuse the target's frozen LM head
    pretrained_path: str | None = None  # dense: start from this HF causal LM (hub name or folder)
    model_type: str | None = None  # dense: transformers architecture (llama, qwen2, ...); None = the target's
    block_size: int = 8  # dflash: block = the last accepted token + block_size - 1 mask slots (tokens drafted)
    mask_token_id: int | None = None  # dflash: id of the mask slots; None = tokenizer's mask token, else EOS
    dflash_gamma: float = 4.0  # dflash: slot i >= 1 weighs exp(-(i - 1) / gamma) in the loss
    max_anchors: int = 32  # dflash: blocks drawn per training row (each a block_size forward)


@dataclass
class StageConfig:
    """A training stage (conf group `stage/`): what data it reads and which losses it weighs."""

    name: str = "pretrain"  # a label (run names, export metadata): pretrain | sft | distill
    feature_weight: float = 1.0  # weight of the feature-regression (smooth L1) loss
    token_weight: float = 0.1  # weight of the token cross-entropy to the target's distribution
    data_ce_weight: float = 0.0  # dense/medusa: weight of plain cross-entropy on the data's next tokens
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
