"""Eval's inputs checked before anything is loaded: a missing draft or prompts file fails in a second, named,
with exit 2 (as `python -m train` does), not after the target has loaded and with a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from eval.config import EvalConfig
from eval.drafters import RANDOM_DRAFT
from train.modeling.draft.io import EXPORT_FORMAT
from train.modeling.target import check_target_path

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def check_draft_path(path: str) -> None:
    """A draftforge export (config.json of our format + weights) or a HF causal-LM folder (a dense draft)."""
    if path == RANDOM_DRAFT:
        return
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"draft_path={path}: no such folder (a draft export, a HF model, or 'random')"
        )
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"draft_path={path}: no config.json, so neither a draft export nor a HF model; a checkpoint in a "
            "published layout is read after `python -m train.export --import --draft <it> --out <export>`"
        )
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"draft_path={path}: config.json is not valid JSON ({err})") from None
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is not None and fmt != EXPORT_FORMAT:
        raise ValueError(f"draft_path={path}: config.json has format {fmt!r}, expected {EXPORT_FORMAT!r}")
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise FileNotFoundError(f"draft_path={path}: no weights ({' or '.join(WEIGHT_FILES)})")


def check_prompt_files(files: list[str]) -> None:
    for f in files:
        path = Path(f).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"prompts.files: {f}: no such file")
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise FileNotFoundError(f"prompts.files: {f}: cannot be read ({err.strerror})") from None


def check_inputs(cfg: EvalConfig) -> None:
    """Every path eval will open, in the order a user would fix them. Raises FileNotFoundError / ValueError."""
    check_target_path(cfg.target.name_or_path)
    if cfg.target.tokenizer:
        check_target_path(cfg.target.tokenizer, "target.tokenizer")
    check_draft_path(cfg.draft_path)
    if cfg.prompts.source in ("jsonl", "questions"):
        check_prompt_files(cfg.prompts.files)
