"""Eval's inputs checked before anything is loaded: a missing draft or prompts file fails in a second, named,
with exit 2 (as `python -m train` does), not after the target has loaded and with a traceback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from data.target_io import check_target_path, check_tokenizer_path
from eval.config import EvalConfig
from eval.drafters import RANDOM_DRAFT
from train.drafts.io import EXPORT_FORMAT

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
        check_tokenizer_path(cfg.target.tokenizer)
    check_draft_path(cfg.draft_path)
    if cfg.prompts.source in ("jsonl", "questions"):
        check_prompt_files(cfg.prompts.files)


def recorded_meta(draft_path: str) -> dict:
    """The meta a draftforge export records (target, tokenizer, fingerprints); {} for random or HF drafts."""
    cfg_file = Path(draft_path).expanduser() / "config.json"
    if draft_path == RANDOM_DRAFT or not cfg_file.is_file():
        return {}
    config = json.loads(cfg_file.read_text())
    return config.get("meta", {}) if config.get("format") == EXPORT_FORMAT else {}


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.resolve() == pb.resolve() if pa.exists() and pb.exists() else a == b


def use_recorded_target(cfg: EvalConfig, chosen: set[str] = frozenset()) -> EvalConfig:
    """Eval runs against the target (and tokenizer) the draft was trained with. Unless the user chose them
    (`chosen`: `target`, `target.name_or_path`, `target.tokenizer` given on the command line) they are the
    export's recorded ones; a chosen target that disagrees is refused, naming both."""
    meta = recorded_meta(cfg.draft_path)
    target, tokenizer = meta.get("target"), meta.get("tokenizer")
    if not target:
        return cfg
    if chosen & {"target", "target.name_or_path"}:
        if not _same(cfg.target.name_or_path, target):
            raise ValueError(
                f"target.name_or_path={cfg.target.name_or_path}, but draft {cfg.draft_path} was trained "
                f"against {target}: leave target= out to use the recorded one"
            )
        target = cfg.target.name_or_path
    if "target.tokenizer" in chosen:
        tok = cfg.target.tokenizer
    else:  # "tokenizer" records the resolved source; the target's own folder means target.tokenizer=null
        tok = None if tokenizer is None or _same(tokenizer, target) else tokenizer
    family = cfg.target.family if chosen & {"target", "target.name_or_path"} else Path(target).name
    new = dataclasses.replace(cfg.target, name_or_path=target, tokenizer=tok, family=family)
    return dataclasses.replace(cfg, target=new)
