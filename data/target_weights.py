"""A target known by its weights: one hash over every tensor of its checkpoint, streamed from disk and cached
beside the model (docs/targets.md, "How a target is identified").

The hash covers each tensor's name, dtype, shape and bytes, in name order, so it does not depend on the
folder's path, on how the checkpoint is sharded, or on the dtype the target is later loaded in; a fine-tune
that changes any weight changes it. safetensors files are read by byte range (the header says where each
tensor lies), so even an 8B checkpoint is hashed in fixed-size chunks without loading it; `.bin` checkpoints
are memory-mapped with torch. The result is cached in `<folder>/.draftforge-weights.json`, keyed by every
weight file's name, size and mtime (or under ~/.cache/draftforge/weights when the folder is read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from pathlib import Path

WEIGHTS_PREFIX = "weights:"
CACHE_NAME = ".draftforge-weights.json"
CHUNK = 1 << 24  # 16 MiB reads
# torch dtype -> the safetensors name, so a .bin and a .safetensors of one checkpoint name dtypes alike
_TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                 "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}  # fmt: skip


def local_folder(name_or_path: str) -> Path | None:
    """The folder holding a target's files: a local directory, or a hub name's snapshot already in the HF
    cache (no network). None when neither exists."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception:  # not a hub name, or not cached: nothing to hash
        return None


def weight_files(folder: Path) -> list[Path]:
    safetensors = sorted(folder.glob("*.safetensors"))
    return safetensors or sorted(p for p in folder.glob("*.bin") if p.name.startswith("pytorch_model"))


def _hash_safetensors(files: list[Path], h: hashlib._Hash) -> None:
    index: list[tuple[str, Path, dict, int]] = []
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        index += [(name, f, info, 8 + n) for name, info in header.items()]
    for name, f, info, base in sorted(index, key=lambda t: t[0]):
        h.update(json.dumps([name, info["dtype"], info["shape"]]).encode())
        start, end = info["data_offsets"]
        with open(f, "rb") as fh:
            fh.seek(base + start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise ValueError(f"{f}: tensor {name} is cut short (truncated file?)")
                h.update(chunk)
                left -= len(chunk)


def _hash_bins(files: list[Path], h: hashlib._Hash) -> None:
    import torch

    tensors = {}
    for f in files:
        tensors.update(torch.load(f, map_location="cpu", mmap=True, weights_only=True))
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = _TORCH_DTYPES.get(str(t.dtype).removeprefix("torch."), str(t.dtype))
        h.update(json.dumps([name, dtype, list(t.shape)]).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _key(files: list[Path]) -> list[list]:
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _cache_paths(folder: Path) -> list[Path]:
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "draftforge" / "weights"
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return [folder / CACHE_NAME, fallback / f"{digest}.json"]


def weights_fingerprint(name_or_path: str) -> str | None:
    """`weights:<16 hex>` for a target whose weight files can be found; None when they cannot (the caller
    then falls back to the weaker config-and-probe fingerprint)."""
    folder = local_folder(name_or_path)
    files = weight_files(folder) if folder else []
    if not files:
        return None
    key = _key(files)
    for cache in _cache_paths(folder):
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key and str(saved.get("fingerprint", "")).startswith(WEIGHTS_PREFIX):
                return saved["fingerprint"]
        except (OSError, ValueError):
            continue
    start = time.perf_counter()
    h = hashlib.sha256()
    (_hash_safetensors if files[0].suffix == ".safetensors" else _hash_bins)(files, h)
    fingerprint = WEIGHTS_PREFIX + h.hexdigest()[:16]
    record = {"fingerprint": fingerprint, "key": key, "seconds": round(time.perf_counter() - start, 3),
              "bytes": sum(k[1] for k in key)}  # fmt: skip
    for cache in _cache_paths(folder):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(cache)  # atomic: ranks hashing at once never read half a file
            break
        except OSError:
            continue
    return fingerprint
