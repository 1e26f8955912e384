"""Where records come from: JSONL(.gz), Parquet, folders of text files, Hugging Face datasets (hub or local).

Every reader yields `RawRecord`s that remember their origin (file and 1-based line, or dataset row), so a
bad record can be reported where the user can find it. Unreadable lines (bad UTF-8, bad JSON, not an
object) are yielded with an `error` instead of being dropped: the validation pass decides what to do.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")  # files read as one raw-text document each
JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")


@dataclass
class SourceSpec:
    """What to read. Plain data (no dependency on `train`): the training config maps onto it."""

    files: list[str] = field(default_factory=list)  # JSONL(.gz) / Parquet files, or folders of text files
    hf_dataset: str | None = None  # HF dataset: hub name, local dataset folder, or a `save_to_disk` folder
    hf_config: str | None = None  # HF dataset configuration name (e.g. "sample-10BT")
    split: str = "train"  # HF split to read
    streaming: bool = False  # stream the HF dataset instead of downloading it whole
    text_field: str = "text"  # field holding raw text (text format)


@dataclass
class RawRecord:
    origin: str  # file path or "hf:<name>[<split>]"
    line: int  # 1-based line in a JSONL file; 1-based row in Parquet / HF; 1 for a text file
    data: dict[str, Any] | None  # the parsed record, or None when it could not be read
    error: str | None = None  # why it could not be read

    @property
    def where(self) -> str:
        return f"{self.origin}:{self.line}"


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """Line by line, decoding each line ourselves: one bad line is one bad record, not a failed file."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue  # blank separator lines (e.g. a trailing newline) hold no record
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield RawRecord(str(path), lineno, None, f"invalid UTF-8 at byte {err.start}")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                yield RawRecord(str(path), lineno, None, f"bad JSON: {err.msg} (column {err.colno})")
                continue
            if not isinstance(obj, dict):
                yield RawRecord(str(path), lineno, None, f"a JSON {type(obj).__name__}, not an object")
                continue
            yield RawRecord(str(path), lineno, obj)


def read_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq  # comes with `datasets`

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            yield RawRecord(str(path), row, obj)


def read_text_folder(path: Path) -> Iterator[RawRecord]:
    """Every text file under the folder (sorted, recursive) is one document."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: folder holds no text files ({', '.join(TEXT_SUFFIXES)})")
    for p in files:
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            yield RawRecord(str(p), 1, None, f"invalid UTF-8 at byte {err.start}")
            continue
        yield RawRecord(str(p), 1, {"text": text, "id": str(p.relative_to(path))})


def read_file(path: Path) -> Iterator[RawRecord]:
    name = path.name.lower()
    if path.is_dir():
        yield from read_text_folder(path)
    elif name.endswith(".parquet"):
        yield from read_parquet(path)
    elif name.endswith(JSON_SUFFIXES):
        yield from read_jsonl(path)
    elif name.endswith(TEXT_SUFFIXES):
        yield from read_text_file(path)
    else:
        raise ValueError(f"{path}: unknown file type (expected JSONL, JSONL.GZ, Parquet, or a text folder)")


def read_text_file(path: Path) -> Iterator[RawRecord]:
    try:
        yield RawRecord(str(path), 1, {"text": path.read_bytes().decode("utf-8"), "id": path.name})
    except UnicodeDecodeError as err:
        yield RawRecord(str(path), 1, None, f"invalid UTF-8 at byte {err.start}")


def read_hf(name: str, config: str | None, split: str, streaming: bool) -> Iterator[RawRecord]:
    """A dataset saved with `save_to_disk`, a local dataset folder, or a hub name (streamed if asked)."""
    import datasets

    origin = f"hf:{name}[{split}]"
    local = Path(name).expanduser()
    try:
        if (local / "dataset_dict.json").is_file() or (local / "dataset_info.json").is_file():
            ds = datasets.load_from_disk(str(local))
            ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset(name, config, split=split, streaming=streaming)
    except (FileNotFoundError, ValueError, ConnectionError, KeyError) as err:
        raise FileNotFoundError(f"data.hf_dataset={name} split={split}: could not load ({err})") from err
    for row, obj in enumerate(ds, start=1):
        yield RawRecord(origin, row, dict(obj))


def check_spec(spec: SourceSpec) -> None:
    """Missing inputs fail before any tokenizing."""
    if not spec.files and not spec.hf_dataset:
        raise ValueError("no data: name files (data.train_files) or a dataset (data.hf_dataset)")
    for f in spec.files:
        if not Path(f).exists():
            raise FileNotFoundError(f"data file {f}: no such file or folder")


def iter_records(spec: SourceSpec) -> Iterator[RawRecord]:
    check_spec(spec)
    for f in spec.files:
        yield from read_file(Path(f))
    if spec.hf_dataset:
        yield from read_hf(spec.hf_dataset, spec.hf_config, spec.split, spec.streaming)
