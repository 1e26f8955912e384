"""The draft export: a small folder (config.json + model.safetensors) that eval and later stages load.

It holds only the draft's own weights; the embedding and LM head it shares with the target come from the
target at load time, and config.json records which target and tokenizer the draft was trained against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from data.atomic import atomic_folder
from data.fingerprint import check_fingerprint
from train.drafts.registry import spec_for

EXPORT_FORMAT = "draftforge-export/1"


def save_draft(
    state_dict: dict[str, torch.Tensor], head_config: Any, out_dir: str | Path, meta: dict
) -> Path:
    """Write atomically: a reader never sees a folder with config.json but a half-written weights file."""
    out_dir = Path(out_dir)
    # Cloned: tied weights share storage, which safetensors refuses to write twice.
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in state_dict.items()}
    config = {"format": EXPORT_FORMAT, "head": head_config.to_dict(), "meta": meta}
    with atomic_folder(out_dir) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return out_dir


def read_export_config(path: str | Path) -> dict:
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: not a draft export (no config.json)")
    config = json.loads(cfg_file.read_text())
    if config.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{cfg_file}: format {config.get('format')!r}, expected {EXPORT_FORMAT!r}")
    return config


def load_draft(
    path: str | Path, target_fingerprint: dict[str, str] | None = None, vocab_size: int | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild the head from an export; refuse one trained against another tokenizer or vocabulary."""
    path = Path(path)
    config = read_export_config(path)
    head_cfg = dict(config["head"])
    cls = spec_for(head_cfg["architecture"]).head
    head = cls(cls.config_class(**head_cfg))
    if vocab_size is not None and head_cfg.get("vocab_size") not in (None, 0, vocab_size):
        raise ValueError(
            f"{path}: draft was trained for a vocabulary of {head_cfg['vocab_size']} tokens, "
            f"this target has {vocab_size}"
        )
    meta = config.get("meta", {})
    if target_fingerprint is not None:
        want, have = meta.get("tokenizer_fingerprint"), target_fingerprint.get("tokenizer_fingerprint")
        check_fingerprint(
            f"draft {path}", "tokenizer", want, have, meta.get("target"), target_fingerprint.get("target")
        )
    missing, unexpected = head.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}/model.safetensors: missing tensors {missing}, unexpected {unexpected}")
    return head, meta
