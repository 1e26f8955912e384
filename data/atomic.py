"""Atomic writes: a reader (an engine, a resume, a later stage) sees the old folder or the new one, never a
half-written one. Write into a temporary sibling, fsync it, then rename it into place in one step."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX: the directory entry lives in the parent's data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(folder)


def commit_folder(tmp: Path, out: Path) -> Path:
    """Replace `out` with the finished folder `tmp` (a sibling): its bytes are on disk before the rename."""
    _fsync_tree(tmp)
    if out.exists():
        shutil.rmtree(out)  # os.replace cannot replace a non-empty directory
    os.replace(tmp, out)
    fsync_dir(out.parent)
    return out


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """`with atomic_folder(out) as tmp:` write into tmp; on success it replaces `out`, on error it vanishes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_folder(tmp, out)


@contextmanager
def atomic_file(out: str | Path) -> Iterator[Path]:
    """`with atomic_file(out) as tmp:` write the file tmp; on success it replaces `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    fsync_dir(out.parent)
