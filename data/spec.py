"""From a `data:` config (the training run's, or a conf/data/*.yaml for `python -m data`) to BuildSpecs.

Takes a plain mapping, not `train.config.DataConfig`, so that `data` does not import `train`; missing keys
take the same defaults as DataConfig.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from data.blocks import BuildSpec
from data.paths import CONF_DIR, register_resolvers
from data.sources import SourceSpec

DATA_CONF_DIR = CONF_DIR / "data"


def split_spec(cfg: Mapping[str, Any], split: str) -> BuildSpec | None:
    """The BuildSpec of split "train" or "valid"; None when the config names no data for that split."""
    files = list(cfg.get(f"{split}_files") or [])
    hf_split = cfg.get("train_split", "train") if split == "train" else cfg.get("valid_split")
    hf = cfg.get("hf_dataset") if hf_split else None
    if not files and not hf:
        return None
    source = SourceSpec(
        files=files,
        hf_dataset=hf,
        hf_config=cfg.get("hf_config"),
        split=hf_split or "train",
        streaming=bool(cfg.get("streaming", False)),
        text_field=cfg.get("text_field", "text"),
    )
    return BuildSpec(
        source=source,
        format=cfg.get("format", "auto"),
        seq_len=int(cfg.get("seq_len", 256)),
        max_tokens=cfg.get("max_tokens") if split == "train" else cfg.get("valid_max_tokens"),
        chat_template=cfg.get("chat_template"),
        validation=cfg.get("validation", "strict"),
        max_bad_fraction=float(cfg.get("max_bad_fraction", 0.01)),
    )


def load_data_config(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A conf/data option by name (`embedded-dialogues`) or a YAML path, with `key=value` overrides."""
    path = Path(name_or_path)
    if not path.is_file():
        path = DATA_CONF_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in DATA_CONF_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"data config {name_or_path!r}: no such file or conf/data option ({options})")
    register_resolvers()
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides or []))
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out
