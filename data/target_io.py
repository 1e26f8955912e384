"""The one place a frozen target and its tokenizer are loaded, for every job: training (`FrozenTarget`),
`python -m data` (regenerate, cache, validate, vocab), export and eval. Also the dtype table, the device
choice and the ids that end a generation, so each of these has one meaning everywhere.

It lives in `data` (the ground floor) because `data` may import neither `train` nor `eval`, and both of
those import `data`.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from data.token_reach import check_vocab  # the tokenizer-vs-embedding check lives there

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")


def torch_dtype(name: str, field: str = "dtype") -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"{field}={name!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The DTYPES name of a torch dtype (a loaded model's, to load another one like it)."""
    return next(name for name, d in DTYPES.items() if d == dtype)


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


# Strings on which two readings of one tokenizer.json differ when they differ at all: whitespace runs and
# indentation (pre-tokenizer), composed vs decomposed accents and ligatures (normaliser), digits, newlines.
PROBES = (
    "Hello, world! How are you today?",
    "def f(x):\n    return x ** 2\n\n\nprint(f(3))",
    "caf\u00e9 cafe\u0301 \ufb01le na\u00efve \u00dcber",
    "1234567 + 89 = 1234656;  tabs\there   and   spaces",
    "\u4f60\u597d\uff0c\u4e16\u754c  \U0001f600 <b>tags</b>",
)
AS_WRITTEN = "tokenizer.json"


class TokenizerMismatchWarning(UserWarning):
    """transformers reads a folder's tokenizer.json differently from the file as written."""


def check_tokenizer_path(path: str, field: str = "target.tokenizer") -> None:
    """A tokenizer is a folder with tokenizer files (no config.json needed) or a tokenizer.json file (read as
    written); a hub name is left to the loader."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix != ".json":
            raise FileNotFoundError(f"{field}={path}: a file here must be a tokenizer.json")
        return
    if p.is_dir():
        if not any((p / f).is_file() for f in (AS_WRITTEN, "tokenizer_config.json", "tokenizer.model")):
            raise FileNotFoundError(f"{field}={path}: folder has no tokenizer.json or tokenizer_config.json")
        return
    if path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{field}={path}: no such file or directory")


def _as_written(file: Path) -> PreTrainedTokenizerFast:
    """The tokenizer.json exactly as saved, with its folder's special tokens and chat template."""
    return PreTrainedTokenizerFast.from_pretrained(str(file.parent), tokenizer_file=str(file))


def tokenizer_differences(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> list[str]:
    """What a user would notice: size, class, and the probe strings that tokenize differently."""
    out = []
    if len(a) != len(b):
        out.append(f"{len(a)} vs {len(b)} tokens")
    out += [f"{s[:24]!r}" for s in PROBES if a(s)["input_ids"] != b(s)["input_ids"]]
    return out


def load_tokenizer(path: str, field: str = "target.tokenizer", warn: bool = True) -> PreTrainedTokenizerBase:
    """One resolution for every job. A folder: what `AutoTokenizer` gives (what HF and vLLM serve with),
    with a warning when that reads the folder's tokenizer.json differently from the file as written (e.g.
    transformers 5 re-interpreting it as the model config's `Qwen2Tokenizer`). A path to a tokenizer.json:
    that file as written."""
    check_tokenizer_path(path, field)
    p = Path(path).expanduser()
    try:
        if p.is_file():
            return _as_written(p)
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{field}={path}: could not load a tokenizer ({err})") from err
    if warn and (p / AS_WRITTEN).is_file():
        diff = tokenizer_differences(tok, _as_written(p / AS_WRITTEN))
        if diff:
            warnings.warn(
                f"{field}={path}: transformers loads this tokenizer as {type(tok).__name__}, which differs "
                f"from {p / AS_WRITTEN} as written ({'; '.join(diff)}). Using {type(tok).__name__} (what HF "
                f"and vLLM serve with); set {field}={p / AS_WRITTEN} to use the file as written.",
                TokenizerMismatchWarning,
                stacklevel=2,
            )
    return tok


def resolve_tokenizer(name_or_path: str, tokenizer: str | None = None) -> str:
    """The one tokenizer source of a target: `target.tokenizer` when set, else the target itself."""
    return tokenizer or name_or_path


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
    tok_path = resolve_tokenizer(name_or_path, tokenizer)
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
