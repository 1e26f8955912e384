"""The `data:` config (conf group `data/`, the training run's `data` section, `python -m data --data NAME`)
and the BuildSpecs it names.

`DataConfig` lives here, not in `train`, so that `data` imports neither train nor eval; the training
schema (`train.config.TrainConfig.data`) uses this very class, so a default has one home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from data.blocks import BuildSpec
from data.paths import CONF_DIR, register_resolvers
from data.sources import SourceSpec
from data.typed import to_typed

DATA_CONF_DIR = CONF_DIR / "data"


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
    seq_len: int = 256  # tokens per training sequence (packed text; chat records: see overlong)
    overlong: str = "truncate"  # chat record past seq_len: truncate (keep its start) | drop | error
    max_tokens: int | None = None  # stop after this many training tokens in total (None = max_steps decides)
    valid_max_tokens: int | None = None  # token budget for the validation split (None = all of it)
    shuffle_seed: int = 0  # order of packed sequences; fixed so a resumed run sees the same stream
    group_by_length: bool = True  # chat: batch conversations of similar length (less padding computed)
    # chat, online: several whole conversations per seq_len row, attention and positions kept per conversation
    # (micro_batch_size then counts rows). Off by default: see data/packing.py for the measurement.
    pack_chats: bool = False
    validation: str = "strict"  # strict: any bad record stops the run | lenient: skip and count them
    max_bad_fraction: float = 0.01  # lenient: stop anyway when more than this fraction of records is bad
    mode: str = "online"  # online: run the target each step | offline: read features from cache_dir
    cache_dir: str | None = None  # hidden-state cache from `python -m data cache` (offline mode)

    def __post_init__(self) -> None:
        choices = {
            "format": ("auto", "text", "sharegpt", "messages"),
            "validation": ("strict", "lenient"),
            "overlong": ("error", "truncate", "drop"),
            "mode": ("online", "offline"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"data.{key}={getattr(self, key)!r}: expected one of {allowed}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"data.max_bad_fraction={self.max_bad_fraction}: must be in [0, 1]")


def split_spec(cfg: DataConfig, split: str) -> BuildSpec | None:
    """The BuildSpec of split "train" or "valid"; None when the config names no data for that split."""
    files = list(cfg.train_files if split == "train" else cfg.valid_files)
    hf_split = cfg.train_split if split == "train" else cfg.valid_split
    hf = cfg.hf_dataset if hf_split else None
    if not files and not hf:
        return None
    source = SourceSpec(
        files=files,
        hf_dataset=hf,
        hf_config=cfg.hf_config,
        split=hf_split or "train",
        streaming=cfg.streaming,
        text_field=cfg.text_field,
    )
    return BuildSpec(
        source=source,
        format=cfg.format,
        seq_len=cfg.seq_len,
        overlong=cfg.overlong,
        max_tokens=cfg.max_tokens if split == "train" else cfg.valid_max_tokens,
        chat_template=cfg.chat_template,
        validation=cfg.validation,
        max_bad_fraction=cfg.max_bad_fraction,
    )


def load_data_config(name_or_path: str, overrides: list[str] | None = None) -> DataConfig:
    """A conf/data option by name (`embedded-dialogues`) or a YAML path, with `key=value` overrides."""
    path = Path(name_or_path)
    if not path.is_file():
        path = DATA_CONF_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in DATA_CONF_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"data config {name_or_path!r}: no such file or conf/data option ({options})")
    register_resolvers()
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides or []))
    return to_typed(DataConfig, cfg, "data config")
