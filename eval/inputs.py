"""Eval's inputs checked before anything is loaded: a missing draft or prompts file fails in a second, named,
with exit 2 (as `python -m train` does), not after the target has loaded and with a traceback."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

from data.fingerprint import WeakFingerprintWarning, is_weights_fingerprint
from data.target_io import check_target_path, check_tokenizer_path
from data.target_weights import weights_fingerprint
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


def _looks_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or Path(path).expanduser().exists()


def _check_chosen_target(cfg: EvalConfig, meta: dict) -> None:
    """A target chosen on the command line at another path than the recorded one is the same target when its
    weights hash matches the recorded one; refused, naming both, when it does not. An export that recorded
    only the old probe fingerprint cannot be checked before the target loads: the drafter's check does it
    (with a warning that the old fingerprint is weaker)."""
    recorded = meta.get("target_fingerprint")
    if not recorded:
        raise ValueError(
            f"target.name_or_path={cfg.target.name_or_path}, but draft {cfg.draft_path} was trained against "
            f"{meta['target']} and records no target fingerprint to match another path by: leave target= out "
            "to use the recorded one"
        )
    if not is_weights_fingerprint(recorded):
        warnings.warn(
            f"draft {cfg.draft_path} records only the old config-and-probe fingerprint of its target "
            f"({recorded}): target.name_or_path={cfg.target.name_or_path} is checked against it once loaded, "
            "a weaker check than the weights hash that new exports record",
            WeakFingerprintWarning,
            stacklevel=3,
        )
        return
    have = weights_fingerprint(cfg.target.name_or_path)
    if have is not None and have != recorded:
        raise ValueError(
            f"target.name_or_path={cfg.target.name_or_path} has weights {have}, but draft {cfg.draft_path} was "
            f"trained against {meta['target']} ({recorded}): choose a target with those weights, or leave "
            "target= out to use the recorded one"
        )


def use_recorded_target(cfg: EvalConfig, chosen: set[str] = frozenset()) -> EvalConfig:
    """Eval runs against the target (and tokenizer) the draft was trained with. Unless the user chose them
    (`chosen`: `target`, `target.name_or_path`, `target.tokenizer` given on the command line) they are the
    export's recorded ones. A chosen target at another path is accepted when its weights match the recorded
    fingerprint, refused naming both when they do not."""
    meta = recorded_meta(cfg.draft_path)
    target, tokenizer = meta.get("target"), meta.get("tokenizer")
    if not target:
        return cfg
    if chosen & {"target", "target.name_or_path"}:
        if not _same(cfg.target.name_or_path, target):
            _check_chosen_target(cfg, meta)
        target = cfg.target.name_or_path
    elif _looks_local(target) and not Path(target).expanduser().exists():
        raise FileNotFoundError(
            f"draft {cfg.draft_path} was trained against {target} ({meta.get('target_fingerprint')}), which "
            "does not exist here: set target.name_or_path=<the folder holding that target>; it is accepted "
            "when its weights match that fingerprint"
        )
    if "target.tokenizer" in chosen:
        tok = cfg.target.tokenizer
    elif tokenizer is None or _same(tokenizer, meta.get("target")):
        tok = None  # "tokenizer" records the resolved source; the target's own folder means target.tokenizer=null
    else:
        tok = tokenizer
    family = cfg.target.family if chosen & {"target", "target.name_or_path"} else Path(target).name
    new = dataclasses.replace(cfg.target, name_or_path=target, tokenizer=tok, family=family)
    return dataclasses.replace(cfg, target=new)
