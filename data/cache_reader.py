"""Read a finished hidden-state cache (see data/cache.py) for offline training."""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open

from data.fingerprint import check_fingerprint, check_target, sha256_file

FORMAT = 2  # the layout data/cache.py writes: 1 = padded (n, seq_len) rows; 2 = real tokens + offsets index


class CacheMismatch(ValueError):
    """The cache was made for another target, tokenizer, data set or layer set."""


class CacheSplit:
    """Random access to the records of one split, a few at a time (shards stay memory-mapped).

    Records are stored without padding (see data/cache.py); `get` pads each back to seq_len (features with
    zeros, ids with the pad token, mask with 0), so callers see the (n, seq_len, ...) rows of the blocks.
    """

    def __init__(self, root: Path, info: dict, layers: list[int], pad_token_id: int = 0) -> None:
        self.info, self.layers, self.pad_token_id = info, layers, pad_token_id
        self.num_blocks, self.seq_len = info["num_blocks"], info["seq_len"]
        self._starts = [s["start"] for s in info["shards"]]
        self._files = [safe_open(str(root / s["file"]), framework="pt") for s in info["shards"]]
        self._offsets = [f.get_tensor("offsets").tolist() for f in self._files]  # the index: 8 bytes a record

    def __len__(self) -> int:
        return self.num_blocks

    def _locate(self, i: int) -> tuple[int, int]:
        k = bisect.bisect_right(self._starts, i) - 1
        return k, i - self._starts[k]

    def lengths(self) -> list[int]:
        """Stored (real) tokens of each record."""
        return [b - a for offs in self._offsets for a, b in itertools.pairwise(offs)]

    def loss_masks(self) -> torch.Tensor:
        """(num_blocks, seq_len) loss masks of the whole split: 1 byte a token, read once at start-up."""
        return self.get(range(self.num_blocks), ["loss_mask"])["loss_mask"]

    def get(self, indices: Iterable[int], keys: list[str]) -> dict[str, torch.Tensor]:
        spans = []
        for i in indices:
            if not 0 <= i < self.num_blocks:
                raise IndexError(f"sequence {i} of a {self.num_blocks}-sequence cache split")
            k, r = self._locate(int(i))
            spans.append((k, self._offsets[k][r], self._offsets[k][r + 1]))
        out = {}
        for key in keys:
            f = self._files[0].get_slice(key)
            if not spans:
                out[key] = torch.zeros((0, self.seq_len, *f.get_shape()[1:]))
                continue
            parts = [self._files[k].get_slice(key)[a:b] for k, a, b in spans]
            fill = self.pad_token_id if key == "input_ids" else 0
            row = torch.full((len(spans), self.seq_len, *parts[0].shape[1:]), fill, dtype=parts[0].dtype)
            for j, part in enumerate(parts):
                row[j, : len(part)] = part
            out[key] = row
        return out


class HiddenStateCache:
    def __init__(self, root: str | Path, verify_hashes: bool = False) -> None:
        self.root = Path(root)
        path = self.root / "manifest.json"
        if not path.is_file():
            hint = " (plan.json exists: the cache job did not finish; rerun it to resume)"
            raise FileNotFoundError(
                f"{path}: no manifest" + (hint if (self.root / "plan.json").is_file() else "")
            )
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise CacheMismatch(
                f"cache {self.root} has the padded layout of an older version: rebuild it with `python -m data cache`"
            )
        for name, info in self.manifest["splits"].items():
            for s in info["shards"]:
                f = self.root / name / s["file"]
                if not f.is_file() or f.stat().st_size != s["bytes"]:
                    raise CacheMismatch(f"{f}: missing or truncated (manifest says {s['bytes']} bytes)")
                if verify_hashes and sha256_file(f) != s["sha256"]:
                    raise CacheMismatch(f"{f}: sha256 differs from the manifest")

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def final_layer(self) -> int:
        return int(self.manifest["num_hidden_layers"])  # hidden_states index after the final norm

    def check(self, fingerprint: dict[str, str], data: dict[str, dict], need_layers: list[int]) -> None:
        """Refuse a cache that would silently train on the wrong features; name what differs."""
        check_target(f"cache {self.root}", self.manifest, fingerprint, CacheMismatch)
        check_fingerprint(f"cache {self.root}", "tokenizer", self.manifest.get("tokenizer_fingerprint"),
                          fingerprint.get("tokenizer_fingerprint"), self.manifest.get("target"),
                          fingerprint.get("target"), CacheMismatch)  # fmt: skip
        for split, want in data.items():
            have = self.manifest["data"].get(split)
            if have != want:
                diff = sorted(k for k in set(want) | set(have or {}) if (have or {}).get(k) != want.get(k))
                raise CacheMismatch(f"cache {self.root}: {split} data differs from this run's in {diff}")
        missing = sorted(set(need_layers) - set(self.layers))
        if missing:
            raise CacheMismatch(
                f"cache {self.root} stores hidden_states {self.layers}, this draft needs {missing} too: rebuild "
                "it with `python -m data cache --layers ...`"
            )

    def split(self, name: str) -> CacheSplit | None:
        info = self.manifest["splits"].get(name)
        return (
            None
            if info is None
            else CacheSplit(self.root / name, info, self.layers, self.manifest["pad_token_id"])
        )
