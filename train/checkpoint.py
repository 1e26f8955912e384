"""Resumable checkpoints (engine state + data position + RNG of every rank + step) and the draft export.

Layout: <run>/checkpoints/step_00000100/{DeepSpeed files, rank0.pt, rank1.pt, ..., manifest.json}.
manifest.json is written last, by rank 0, after every rank has finished: a folder without it is an
interrupted save and is never resumed from.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train import distributed as dist
from train.engine import Engine
from train.modeling.draft.io import save_draft

MANIFEST = "manifest.json"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    micro_index: int = 0  # micro-batches consumed: the data position
    tokens_seen: int = 0  # target tokens (all ranks) the draft has trained on
    wandb_run_id: str | None = None


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(engine: Engine, run_dir: Path, state: TrainState, fingerprint: dict, keep: int) -> Path:
    root = checkpoint_root(run_dir)
    tag = f"step_{state.step:08d}"
    folder = root / tag
    if dist.is_main() and folder.exists():
        shutil.rmtree(folder)  # leftovers of an interrupted save of the same step
    dist.barrier()
    engine.save(root, tag)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state": asdict(state), "rng": _rng_state()}, folder / f"rank{dist.rank()}.pt")
    dist.barrier()
    if dist.is_main():
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        manifest = {
            "step": state.step,
            "world_size": dist.world_size(),
            "fingerprint": fingerprint,
            "files": {str(p.relative_to(folder)): p.stat().st_size for p in files},
        }
        tmp = folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.rename(folder / MANIFEST)
        for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    dist.barrier()
    return folder


def _problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is whole."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest.json (the save was interrupted)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError) as err:
        return f"unreadable manifest ({err})"
    for rel, size in files.items():
        p = folder / rel
        if not p.is_file():
            return f"missing {rel}"
        if p.stat().st_size != size:
            return f"{rel} has {p.stat().st_size} bytes, manifest says {size}"
    return None


def complete_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and _problem(p) is None
    )


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    for folder in sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")), reverse=True
    ):
        problem = _problem(folder)
        if problem is None:
            return folder
        dist.print0(f"[checkpoint] skipping {folder}: {problem}")
    return None


def load_checkpoint(engine: Engine, folder: Path) -> TrainState:
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest["world_size"] != dist.world_size():
        raise ValueError(
            f"{folder}: saved with world_size={manifest['world_size']}, resuming with {dist.world_size()}"
        )
    engine.load(folder.parent, folder.name)
    saved = torch.load(folder / f"rank{dist.rank()}.pt", map_location="cpu", weights_only=False)
    _set_rng_state(saved["rng"])
    return TrainState(**saved["state"])


def export_draft(engine: Engine, head_config: Any, out_dir: Path, meta: dict) -> Path:
    """All ranks take part (ZeRO-3 gathers shards); rank 0 writes."""
    state_dict = engine.full_state_dict()
    if dist.is_main():
        save_draft(state_dict, head_config, out_dir, meta)
    dist.barrier()
    return out_dir
