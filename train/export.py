"""Export a trained draft in the layout a serving engine loads, or import a published checkpoint.

    python -m train.export --draft outputs/<run>/export --format eagle3-sglang --out exports/sglang [--target DIR]
    python -m train.export --import --draft /models/EAGLE3-LLaMA3.1-Instruct-8B --out drafts/eagle3 [--target DIR]

Formats: each algorithm's SPEC.formats (train/drafts/<name>/export*.py). Every export writes a README.md card and a draftforge.json
(our meta, so a re-import keeps the provenance) and refuses a target whose tokenizer is not the draft's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from data.atomic import atomic_folder
from data.target_io import DTYPES, resolve_tokenizer
from train.drafts.io import load_draft, read_export_config, save_draft
from train.drafts.registry import formats
from train.export_formats.card import write_card
from train.export_formats.common import ExportError, Target, check_tokenizer, read_json, write_json

# What eval (its vLLM backend) may use from here: train.export is part of train's public surface.
__all__ = ["ExportError", "detect", "export_draft", "import_draft", "read_json"]


def get_format(name: str) -> ModuleType:
    known = formats()  # every algorithm's formats (SPEC.formats), in detection order
    if name not in known:
        raise ExportError(f"unknown format {name!r}; known: {sorted(known)}")
    return known[name]


def detect(src: Path) -> ModuleType:
    known = formats()
    for fmt in known.values():
        if fmt.matches(src):
            return fmt
    raise ExportError(f"{src}: not a checkpoint in any known format ({sorted(known)}); pass --format")


SIDECAR = "draftforge.json"


def _target(arg: str | None, meta: dict, tokenizer: str | None = None) -> Target:
    path = arg or meta.get("target")
    if not path or not (Path(path) / "config.json").is_file():
        raise ExportError(
            f"no local target folder (recorded target: {meta.get('target')!r}); pass --target DIR"
        )
    if tokenizer is None and path == meta.get("target") and meta.get("tokenizer") not in (None, path):
        tokenizer = meta["tokenizer"]  # the tokenizer the draft was trained with (target.tokenizer)
    return Target.load(path, tokenizer)


def export_draft(
    draft: Path,
    fmt_name: str,
    out: Path,
    target_dir: str | None = None,
    dtype: str = "float32",
    tokenizer: str | None = None,
) -> Path:
    fmt = get_format(fmt_name)
    read_export_config(draft)  # a clear error for a folder that is not one of our exports
    head, meta = load_draft(draft)
    target = _target(target_dir, meta, tokenizer)
    check_tokenizer(meta, target, str(draft))
    with atomic_folder(out) as tmp:  # an engine never sees a half-written folder
        notes = fmt.export(head.eval(), meta, tmp, target, dtype)
        # Formats write into the temp folder; the card's commands must name the folder's final place.
        notes = [n.replace(str(tmp), str(out.resolve())) for n in notes]
        write_json(tmp / SIDECAR, {"format": fmt.NAME, "meta": meta, "head": head.config.to_dict()})
        write_card(tmp, fmt.NAME, meta, target.path, target.tokenizer_fingerprint, draft, notes)
    return out


def import_draft(
    src: Path,
    out: Path,
    fmt_name: str | None = None,
    target_dir: str | None = None,
    tokenizer: str | None = None,
) -> Path:
    fmt = get_format(fmt_name) if fmt_name else detect(src)
    target = Target.load(target_dir, tokenizer) if target_dir else None
    head, extra = fmt.load(src, target)
    sidecar = src / SIDECAR
    meta = dict(read_json(sidecar)["meta"]) if sidecar.is_file() else {}
    if target is not None:
        check_tokenizer(meta, target, str(src))
        vocab = getattr(head.config, "vocab_size", 0)
        if vocab and vocab != int(target.config.vocab_size):
            raise ExportError(
                f"{src}: draft vocabulary {vocab} != target vocabulary {target.config.vocab_size}"
            )
        meta.setdefault("target", target.path)
        meta.setdefault("tokenizer_fingerprint", target.tokenizer_fingerprint)
        meta.setdefault("tokenizer", resolve_tokenizer(target.path, target.tokenizer_path))
    meta.update(extra, imported_from=str(src))
    return save_draft(head.state_dict(), head.config, out, meta)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--draft", required=True, help="our export folder (or, with --import, a published checkpoint)"
    )
    p.add_argument(
        "--format", choices=sorted(formats()), help="target layout (with --import: detected if omitted)"
    )
    p.add_argument("--out", required=True, help="output folder (replaced)")
    p.add_argument("--target", help="target model folder; default: the target recorded in the draft")
    p.add_argument(
        "--tokenizer",
        help="tokenizer folder or tokenizer.json (as written); default: the one recorded in the draft, else "
        "the target folder's",
    )
    p.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="dtype of exported float tensors"
    )
    p.add_argument(
        "--import", dest="do_import", action="store_true", help="published checkpoint -> our export"
    )
    args = p.parse_args(argv)
    try:
        if args.do_import:
            out = import_draft(Path(args.draft), Path(args.out), args.format, args.target, args.tokenizer)
        else:
            if not args.format:
                p.error("--format is required for an export")
            out = export_draft(
                Path(args.draft), args.format, Path(args.out), args.target, args.dtype, args.tokenizer
            )
    except ExportError as err:
        raise SystemExit(f"[export] refused: {err}") from None
    print(f"[export] wrote {out}")


if __name__ == "__main__":
    main()
