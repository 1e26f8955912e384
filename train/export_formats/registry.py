"""Format name -> module. A format module defines NAME, export(head, meta, out, target, dtype) -> card notes,
matches(folder) -> bool and load(folder, target) -> (head, meta). A new format is a file plus one entry."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from train.drafts.dflash import export_vllm as dflash
from train.export_formats import eagle1, eagle3_sglang, hf_dense, medusa, speculators
from train.export_formats.common import ExportError

# Detection order matters: the specific layouts first, the original EAGLE layout (least marked) last.
FORMATS: dict[str, ModuleType] = {
    m.NAME: m for m in (dflash, speculators, eagle3_sglang, medusa, hf_dense, eagle1)
}


def get_format(name: str) -> ModuleType:
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r}; known: {sorted(FORMATS)}")
    return FORMATS[name]


def detect(src: Path) -> ModuleType:
    for fmt in FORMATS.values():
        if fmt.matches(src):
            return fmt
    raise ExportError(f"{src}: not a checkpoint in any known format ({sorted(FORMATS)}); pass --format")
