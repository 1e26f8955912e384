"""Resumable checkpoints (engine state + data position + RNG of every rank + step) and the draft export.

Layout: <run>/checkpoints/step_00000100/{DeepSpeed files, rank0.pt, rank1.pt, ..., manifest.json}.

A save writes into `step_N.tmp/`; after every rank has written its part, the ranks hash the files (each a
share, in parallel), rank 0 writes manifest.json (every file's size and sha256, the fingerprints and the
resume identity) and renames the folder to `step_N` in one atomic step. So a `step_N` folder is either whole
or damaged afterwards, and resume verifies it: a missing manifest, a missing or truncated file or a changed
byte makes it pick the previous checkpoint and say why. `*.tmp` folders are leftovers of an interrupted
save and are removed at start-up.

Cost: sha256 runs at roughly 0.5-1 GB/s per core, split over the ranks; a multi-GB ZeRO checkpoint adds
seconds to each save and to resume, which is the price of never resuming from a torn file; the save also
fsyncs every file before the rename (data.atomic), so the folder's bytes are on disk when it appears.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.atomic import commit_folder
from data.fingerprint import sha256_file
from train import distributed as dist
from train.drafts.io import save_draft
from train.engine import Engine

MANIFEST = "manifest.json"
TMP_SUFFIX = ".tmp"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done (skipped non-finite steps included)
    micro_index: int = 0  # micro-batches consumed: the data position
    tokens_seen: int = 0  # target tokens (all ranks) the draft has trained on
    wandb_run_id: str | None = None
    skipped_steps: int = 0  # steps skipped for a non-finite loss, over the whole run
    train_seconds: float = 0.0  # wall time spent in training steps, summed over restarts (set-up excluded)


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


def _hash_share(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """This rank's share of the files (every world_size-th), so hashing a big checkpoint runs in parallel."""
    r, w = dist.rank(), dist.world_size()
    return {n: {"bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in names[r::w]}


def save_checkpoint(
    engine: Engine,
    run_dir: Path,
    state: TrainState,
    fingerprint: dict,
    keep: int,
    identity: dict[str, str] | None = None,
    during_save: Callable[[], None] | None = None,
) -> Path:
    root = checkpoint_root(run_dir)
    tag = f"step_{state.step:08d}"
    final, tmp = root / tag, root / (tag + TMP_SUFFIX)
    if dist.is_main() and tmp.exists():
        shutil.rmtree(tmp)
    dist.barrier()
    engine.save(root, tmp.name)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"state": asdict(state), "rng": _rng_state()}, tmp / f"rank{dist.rank()}.pt")
    if during_save is not None:
        during_save()  # test-only fault injection point (train/guards.py: FaultInjection)
    dist.barrier()  # every rank has written its part
    names = dist.broadcast_object(sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()))
    files: dict[str, dict[str, Any]] = {}
    for share in dist.all_gather_object(_hash_share(tmp, names)):  # type: ignore[arg-type]
        files.update(share)  # type: ignore[arg-type]
    if dist.is_main():
        manifest = {
            "step": state.step,
            "world_size": dist.world_size(),
            "fingerprint": fingerprint,
            "identity": identity or {},
            "files": dict(sorted(files.items())),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        # The commit point: a step_N folder appears whole or not at all. It replaces a damaged save of the
        # same step that resume skipped.
        commit_folder(tmp, final)
        _prune(root, keep)
    dist.barrier()
    return final


def _step_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and p.suffix == "")


def _prune(root: Path, keep: int) -> None:
    """Keep the newest `keep` folders that have a manifest; remove every other step folder."""
    if keep <= 0:
        return
    kept = [p for p in _step_folders(root) if (p / MANIFEST).is_file()][-keep:]
    for p in _step_folders(root):
        if p not in kept:
            shutil.rmtree(p, ignore_errors=True)


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Rank 0 removes the `.tmp` folders of interrupted saves; returns what it removed."""
    root = checkpoint_root(run_dir)
    removed = []
    if dist.is_main() and root.is_dir():
        for p in sorted(root.iterdir()):
            if p.is_dir() and p.name.startswith("step_") and p.name.endswith(TMP_SUFFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    dist.barrier()
    return removed


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def problem(folder: Path, hash_names: list[str] | None = None) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is whole. Sizes are checked for
    every file; hashes for `hash_names` (None = all)."""
    if not (folder / MANIFEST).is_file():
        return "no manifest.json (the save was interrupted)"
    try:
        manifest = read_manifest(folder)
        files = manifest["files"]
        world = int(manifest["world_size"])
        if not all(isinstance(m, dict) and {"bytes", "sha256"} <= m.keys() for m in files.values()):
            raise ValueError("file entries lack bytes/sha256 (a manifest from before hashing)")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        return f"unreadable manifest ({err!r})"
    for r in range(world):
        if f"rank{r}.pt" not in files:
            return f"manifest lists no rank{r}.pt"
    for rel, meta in files.items():
        p = folder / rel
        if not p.is_file():
            return f"missing {rel}"
        if p.stat().st_size != meta["bytes"]:
            return (
                f"{rel} has {p.stat().st_size} bytes, manifest says {meta['bytes']} (truncated or rewritten)"
            )
    for rel in files if hash_names is None else hash_names:
        if sha256_file(folder / rel) != files[rel]["sha256"]:
            return f"{rel}: sha256 differs from the manifest (corrupted bytes)"
    return None


def latest_checkpoint(run_dir: Path, log: Callable[[str], None] = dist.print0) -> Path | None:
    """The newest whole checkpoint. Under a process group every rank hashes a share of each candidate's
    files and all ranks agree on the answer; damaged candidates are logged with the reason."""
    for folder in reversed(_step_folders(checkpoint_root(run_dir))):
        share = None
        if (folder / MANIFEST).is_file() and dist.world_size() > 1:
            try:
                share = sorted(read_manifest(folder)["files"])[dist.rank() :: dist.world_size()]
            except (json.JSONDecodeError, KeyError, TypeError):
                share = None  # problem() reports the unreadable manifest
        found = [p for p in dist.all_gather_object(problem(folder, share)) if p is not None]
        if not found:
            return folder
        log(f"[checkpoint] skipping {folder}: {found[0]}")
    return None


def read_train_state(folder: Path) -> TrainState:
    """The loop's state, and this rank's RNG streams when the checkpoint has a file for this rank."""
    own = folder / f"rank{dist.rank()}.pt"
    if own.is_file():
        saved = torch.load(own, map_location="cpu", weights_only=False)
        _set_rng_state(saved["rng"])
    else:  # a larger world: a new rank has no stream of its own (resume seeds it)
        saved = torch.load(folder / "rank0.pt", map_location="cpu", weights_only=False)
    known = TrainState.__dataclass_fields__
    return TrainState(**{k: v for k, v in saved["state"].items() if k in known})


def load_checkpoint(engine: Engine, folder: Path) -> TrainState:
    """The exact path: the engine loads its own layout, saved by the same number of ranks."""
    engine.load(folder.parent, folder.name)
    return read_train_state(folder)


def write_export(engine: Engine, head_config: Any, out_dir: Path, meta: dict) -> Path:
    """The run's draft export (train.drafts.io; not a serving format: that is train.export). All ranks
    take part (ZeRO-3 gathers shards); rank 0 writes."""
    state_dict = engine.full_state_dict()
    if dist.is_main():
        save_draft(state_dict, head_config, out_dir, meta)
    dist.barrier()
    return out_dir
