"""The one place a frozen target and its tokenizer are loaded, for every job: training (`FrozenTarget`),
`python -m data` (regenerate, cache, validate, vocab), export and eval. Also the dtype table, the device
choice and the ids that end a generation, so each of these has one meaning everywhere.

It lives in `data` (the ground floor) because `data` may import neither `train` nor `eval`, and both of
those import `data`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")


def torch_dtype(name: str, field: str = "dtype") -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"{field}={name!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[name]


def pick_device(requested: str | torch.device = "auto", index: int = 0) -> torch.device:
    """'auto' = CUDA device `index` (a rank's local rank) when there is one, else the CPU."""
    if str(requested) == "auto":
        return torch.device(f"cuda:{index}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={requested} but torch.cuda.is_available() is False")
    return device


def choose_attention(requested: str, device: torch.device) -> str:
    """'auto' takes flash-attn 2 on CUDA when it is installed, else PyTorch's sdpa (CPU, or no flash-attn)."""
    if requested not in ATTENTION:
        raise ValueError(f"attn_implementation={requested!r}: expected one of {ATTENTION}")
    if requested != "auto":
        return requested
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def check_target_path(name_or_path: str, field: str = "target.name_or_path") -> None:
    """Fail before any work when a local target directory is missing or incomplete."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{field}={name_or_path}: directory has no config.json (not a HF model)")
        return
    if name_or_path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{field}={name_or_path}: no such directory")


def load_tokenizer(path: str, field: str = "target.tokenizer") -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise FileNotFoundError(f"{field}={path}: could not load a tokenizer ({err})") from err


def load_model(
    name_or_path: str,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    attn_implementation: str = "auto",
    field: str = "target.name_or_path",
) -> nn.Module:
    """A causal LM in eval mode with gradients off, on `device` ('auto' = CUDA when there is one)."""
    check_target_path(name_or_path, field)
    dev = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path,
            dtype=torch_dtype(dtype, "target.dtype"),
            attn_implementation=choose_attention(attn_implementation, dev),
        )
    except OSError as err:
        raise FileNotFoundError(
            f"{field}={name_or_path}: could not load a model ({err}). Offline machines need a "
            "local directory or a model already in the HF cache."
        ) from err
    model.eval().requires_grad_(False)
    return model.to(dev)


def check_vocab(model: nn.Module, tokenizer: PreTrainedTokenizerBase, model_path: str, tok_path: str) -> None:
    """A tokenizer that can emit ids the target has no embedding for would index out of range mid-run."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(
            f"tokenizer {tok_path} has {len(tokenizer)} tokens but target {model_path} has only {rows} "
            "embedding rows: the tokenizer does not belong to this target (set target.tokenizer)."
        )


def load_target(
    name_or_path: str,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    attn_implementation: str = "auto",
    tokenizer: str | None = None,
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The frozen target and its tokenizer (`tokenizer` when it is not stored with the model), checked to
    belong together."""
    model = load_model(name_or_path, dtype, device, attn_implementation)
    tok_path = tokenizer or name_or_path
    tok = load_tokenizer(tok_path)
    check_vocab(model, tok, name_or_path, tok_path)
    return model, tok


def eos_token_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every id that ends a generation: generation_config's (int or list) plus the tokenizer's eos."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Iterable):
            ids.update(int(v) for v in value)
    return ids


def normalize_layers(layers: list[int], num_layers: int) -> list[int]:
    """hidden_states has num_layers + 1 entries (0 = embeddings, -1 = after the final norm): make ids >= 0."""
    out = []
    for i in layers:
        j = i + num_layers + 1 if i < 0 else i
        if not 0 <= j <= num_layers:
            raise ValueError(f"layer {i}: hidden_states of this target has indices 0..{num_layers} (or -1)")
        out.append(j)
    return sorted(set(out))
