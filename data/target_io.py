"""Load a frozen target for data jobs (regeneration, caching) with `transformers` directly.

`train.modeling.target.FrozenTarget` does the same for training; data jobs take only what they need so that
`data` never imports `train`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_target(
    name_or_path: str, dtype: str = "float32", device: str = "auto", tokenizer: str | None = None
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: expected one of {sorted(DTYPES)}")
    local = Path(name_or_path).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"target {name_or_path}: directory has no config.json (not a HF model)")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=DTYPES[dtype], attn_implementation="sdpa"
        )
        tok = AutoTokenizer.from_pretrained(tokenizer or name_or_path)
    except OSError as err:
        raise FileNotFoundError(f"target {name_or_path}: could not load ({err})") from err
    model.eval().requires_grad_(False)
    return model.to(pick_device(device)), tok


def normalize_layers(layers: list[int], num_layers: int) -> list[int]:
    """hidden_states has num_layers + 1 entries (0 = embeddings, -1 = after the final norm): make ids >= 0."""
    out = []
    for i in layers:
        j = i + num_layers + 1 if i < 0 else i
        if not 0 <= j <= num_layers:
            raise ValueError(f"layer {i}: hidden_states of this target has indices 0..{num_layers} (or -1)")
        out.append(j)
    return sorted(set(out))
