"""The typed, strict run configuration. Hydra composes YAML; `to_typed` converts it once, at the entry.

Below `__main__` nobody sees a DictConfig. Unknown keys and ill-typed values fail here, before any work,
with a message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.tracking import LoggerConfig
from train.modeling.target import TargetConfig


class ConfigError(ValueError):
    """A configuration problem, reported with the offending key."""


@dataclass
class DraftConfig:
    """The draft architecture (conf group `draft/`). None = take the value from the target."""

    name: str = "eagle"  # registry name: eagle | eagle3 | scylla | medusa | dense
    num_layers: int = 1  # decoder layers (eagle/eagle3/scylla/dense) or residual blocks per head (medusa)
    hidden_size: int | None = None  # dense only: width of the stand-alone LM; None = the target's
    intermediate_size: int | None = None  # MLP width; None = the target's
    num_heads: int | None = None  # attention heads; None = the target's
    num_kv_heads: int | None = None  # key/value heads; None = the target's
    feature_noise: float = 0.0  # half-width of uniform noise added to input features in training (EAGLE: 0.1)
    feature_layers: list[int] | None = None  # eagle3/scylla: target hidden_states fused; None = low/mid/high
    layout: str = "draftforge"  # eagle3/scylla: draftforge | eagle3 (the published layout SGLang/vLLM load)
    first_layer_input_norm: bool = True  # eagle: False = the original EAGLE-1/2 layout (exportable)
    draft_vocab_size: int | None = None  # eagle3/scylla: reduced LM-head vocabulary; None = the target's
    vocab_path: str | None = None  # eagle3/scylla: d2t/t2d map (python -m data.draft_vocab); None = build
    ttt_steps: int = 1  # eagle3/scylla: training-time-test unroll depth (1 = no unrolling)
    ttt_decay: float = 0.8  # eagle3/scylla/medusa: loss weight of unroll step / head j is decay**j
    medusa_heads: int = 4  # medusa: K heads proposing tokens t+2 .. t+K+1
    share_lm_head: bool = True  # medusa: heads reuse the target's frozen LM head
    pretrained_path: str | None = None  # dense: start from this HF causal LM (hub name or folder)
    model_type: str | None = None  # dense: transformers architecture (llama, qwen2, ...); None = the target's


@dataclass
class StageConfig:
    """A training stage (conf group `stage/`): what data it reads and which losses it weighs."""

    name: str = "pretrain"  # registry name: pretrain
    feature_weight: float = 1.0  # weight of the feature-regression (smooth L1) loss
    token_weight: float = 0.1  # weight of the token cross-entropy to the target's distribution
    data_ce_weight: float = 0.0  # dense/medusa: weight of plain cross-entropy on the data's next tokens
    divergence: str = "soft_ce"  # token loss vs the target: soft_ce | forward_kl | reverse_kl | tvd
    temperature: float = 1.0  # temperature both distributions are compared at
    top_k: int | None = None  # compare only over the target's top-k tokens (None = full vocabulary)
    init_from: str | None = None  # a draft export to start from (fresh optimizer and schedule)


@dataclass
class DataConfig:
    """Training and validation data (conf group `data/`); read, checked and tokenized by `data/`."""

    name: str = "embedded-pydocs"  # shown in logs and exports
    train_files: list[str] = field(default_factory=list)  # JSONL(.gz) / Parquet files, or text folders
    valid_files: list[str] = field(default_factory=list)  # held-out files for the validation loss
    hf_dataset: str | None = None  # HF dataset (hub name or local folder), read after train/valid_files
    hf_config: str | None = None  # HF dataset configuration name
    train_split: str | None = "train"  # HF split for training (None = train_files only, HF for validation)
    valid_split: str | None = None  # HF split for validation (None = none from the HF dataset)
    streaming: bool = False  # stream the HF dataset (corpora too big for disk; stops at max_tokens)
    format: str = "auto"  # auto | text | sharegpt | messages (auto: decided by the first record)
    text_field: str = "text"  # the field holding raw text (text format)
    chat_template: str | None = None  # .jinja file replacing the tokenizer's chat template
    seq_len: int = 256  # tokens per training sequence (packed text; chat records longer than this are bad)
    max_tokens: int | None = None  # stop after this many training tokens in total (None = max_steps decides)
    valid_max_tokens: int | None = None  # token budget for the validation split (None = all of it)
    shuffle_seed: int = 0  # order of packed sequences; fixed so a resumed run sees the same stream
    group_by_length: bool = True  # chat: batch conversations of similar length (less padding computed)
    validation: str = "strict"  # strict: any bad record stops the run | lenient: skip and count them
    max_bad_fraction: float = 0.01  # lenient: stop anyway when more than this fraction of records is bad
    mode: str = "online"  # online: run the target each step | offline: read features from cache_dir
    cache_dir: str | None = None  # hidden-state cache from `python -m data cache` (offline mode)

    def __post_init__(self) -> None:
        choices = {
            "format": ("auto", "text", "sharegpt", "messages"),
            "validation": ("strict", "lenient"),
            "mode": ("online", "offline"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"data.{key}={getattr(self, key)!r}: expected one of {allowed}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"data.max_bad_fraction={self.max_bad_fraction}: must be in [0, 1]")


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


@dataclass
class TrainConfig:
    target: TargetConfig = field(default_factory=TargetConfig)
    draft: DraftConfig = field(default_factory=DraftConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    run_name: str = "run"  # names the output directory outputs/<run_name>; same on every rank
    output_dir: str = "outputs/run"  # checkpoints, export, resolved config, metrics
    resume: bool = False  # continue from the newest whole checkpoint (implied on a SLURM requeue)
    # What a resumed run may change from its checkpoint; anything else differing is refused by name. Any of:
    # tokenizer, target, draft_vocab, world_size, batch_size.
    resume_allow_changes: list[str] = field(default_factory=list)


def to_typed(cfg: DictConfig | dict) -> TrainConfig:
    """Merge onto the schema (strict: unknown key = error), resolve interpolations, build dataclasses."""
    schema = OmegaConf.structured(TrainConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
        OmegaConf.resolve(merged)
        typed = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ConfigError(f"config key {key!r}: {err.msg if hasattr(err, 'msg') else err}") from None
    except ValueError as err:  # raised by a __post_init__ check; it names its own key
        raise ConfigError(str(err)) from None
    assert isinstance(typed, TrainConfig)
    _check(typed)
    return typed


def _check(cfg: TrainConfig) -> None:
    from train.modeling.draft.registry import DRAFT_HEADS
    from train.stages import STAGES

    if cfg.draft.name not in DRAFT_HEADS:
        raise ConfigError(f"draft.name={cfg.draft.name!r}: expected one of {sorted(DRAFT_HEADS)}")
    from train.losses import DIVERGENCES

    if cfg.stage.divergence not in DIVERGENCES:
        raise ConfigError(f"stage.divergence={cfg.stage.divergence!r}: expected one of {DIVERGENCES}")
    if cfg.stage.temperature <= 0:
        raise ConfigError(f"stage.temperature={cfg.stage.temperature}: must be > 0")
    if cfg.stage.name not in STAGES:
        raise ConfigError(f"stage.name={cfg.stage.name!r}: expected one of {sorted(STAGES)}")
    for key, value in (
        ("train.micro_batch_size", cfg.train.micro_batch_size),
        ("train.grad_accum", cfg.train.grad_accum),
        ("train.max_steps", cfg.train.max_steps),
        ("data.seq_len", cfg.data.seq_len),
    ):
        if value < 1:
            raise ConfigError(f"{key}={value}: must be >= 1")
    if not cfg.data.train_files and not cfg.data.hf_dataset:
        raise ConfigError("no training data: set data.train_files or data.hf_dataset")


def check_paths(cfg: TrainConfig) -> None:
    """Missing files fail here, before a process group, a model load or a tokenizer pass."""
    from pathlib import Path

    from train.modeling.target import check_target_path

    check_target_path(cfg.target.name_or_path)
    if cfg.target.tokenizer:
        check_target_path(cfg.target.tokenizer, "target.tokenizer")
    for key, files in (
        ("data.train_files", cfg.data.train_files),
        ("data.valid_files", cfg.data.valid_files),
    ):
        for f in files:
            if not Path(f).exists():  # a file, or a folder of text files
                raise FileNotFoundError(f"{key}: {f}: no such file or folder")
    if cfg.stage.init_from and not (Path(cfg.stage.init_from) / "config.json").is_file():
        raise FileNotFoundError(f"stage.init_from={cfg.stage.init_from}: not a draft export (no config.json)")
