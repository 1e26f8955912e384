"""What every format shares: the target it is exported for, the tokenizer check, tensor files and dtypes."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedTokenizerBase

from data.fingerprint import check_fingerprint, tokenizer_fingerprint
from data.target_io import DTYPES as DTYPES  # re-exported: the formats cast with it
from data.target_io import load_model, load_tokenizer, resolve_tokenizer


class ExportError(ValueError):
    """A draft that cannot be written (or read) exactly in the requested format; the message names why."""


@dataclass
class Target:
    """The target a draft is exported for: its config and tokenizer; weights only when a format needs them."""

    path: str
    config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase
    _model: nn.Module | None = field(default=None, repr=False)
    tokenizer_path: str | None = None  # --tokenizer (None = the target folder's own)

    @classmethod
    def load(cls, path: str | Path, tokenizer: str | None = None) -> Target:
        return _load_target(str(path), tokenizer)

    @classmethod
    def _load(cls, path: str, tokenizer: str | None = None) -> Target:
        if not (Path(path) / "config.json").is_file():
            raise ExportError(f"--target {path}: not a Hugging Face model folder (no config.json)")
        field = "--tokenizer" if tokenizer else "--target"
        tok = load_tokenizer(resolve_tokenizer(path, tokenizer), field)
        return cls(path, AutoConfig.from_pretrained(path), tok, tokenizer_path=tokenizer)

    @property
    def tokenizer_fingerprint(self) -> str:
        return tokenizer_fingerprint(self.tokenizer)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def model(self) -> nn.Module:
        """Loaded lazily: only Medusa (a shared LM head written per head) needs the target's weights."""
        if self._model is None:
            self._model = load_model(self.path, "float32", "cpu", field="--target")
        return self._model


@functools.lru_cache(maxsize=2)
def _load_target(path: str, tokenizer: str | None) -> Target:
    """Cached: an export followed by an import (or a test session) reads the same target once."""
    return Target._load(path, tokenizer)


def check_tokenizer(meta: dict, target: Target, what: str) -> None:
    """Refuse a draft trained with another tokenizer: its token ids would mean other tokens."""
    want, have = meta.get("tokenizer_fingerprint"), target.tokenizer_fingerprint
    check_fingerprint(f"draft {what}", "tokenizer", want, have, meta.get("target"), f"--target {target.path}",
                      ExportError)  # fmt: skip


def cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors to the export dtype; index maps (d2t, t2d) keep their integer/bool dtype."""
    return {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous().clone()
        for k, v in tensors.items()
    }


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})


def read_tensors(folder: Path, names: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")) -> dict:
    """The first weights file found; .bin is read with weights_only (no pickled code runs)."""
    for name in names:
        f = folder / name
        if f.is_file():
            if name.endswith(".safetensors"):
                return load_file(str(f))
            return torch.load(str(f), map_location="cpu", weights_only=True)
    raise ExportError(f"{folder}: no weights file (looked for {', '.join(names)})")


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    return json.loads(path.read_text())


def refuse_unknown(tensors: dict[str, torch.Tensor], known: set[str], fmt: str) -> None:
    """A tensor the layout has no place for would be silently dropped: refuse, naming it."""
    extra = sorted(set(tensors) - known)
    if extra:
        raise ExportError(
            f"{fmt}: tensor(s) {extra} have no place in this format; the head cannot be exported"
        )


def llama_layer_fields(cfg: Any, target: Target, dtype: str) -> dict[str, Any]:
    """The LlamaConfig fields every EAGLE-style draft config carries (EAGLE-1/2, EAGLE-3, speculators): what
    the engines build the draft's decoder layers from. Callers add their format's own keys."""
    tc = target.config
    return {
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "num_hidden_layers": cfg.num_layers,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": cfg.rope_scaling,  # the target's (llama3, yarn, ...): engines rotate as the head does
        "hidden_act": "silu",
        "max_position_embeddings": int(
            cfg.max_position_embeddings or getattr(tc, "max_position_embeddings", 4096)
        ),
        "vocab_size": int(tc.vocab_size),
        "bos_token_id": getattr(tc, "bos_token_id", None),
        "eos_token_id": getattr(tc, "eos_token_id", None),
        "pad_token_id": getattr(tc, "pad_token_id", None),
        "torch_dtype": dtype,
    }
