"""Build the shipped corpus: Python-docs text and chat dialogues (chatterbot-corpus + Python FAQ) as jsonl.gz."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import textwrap
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from builders.rst import clean_rst, faq_pairs

DOCS_VALID_PERCENT = 5
DIALOGUES_VALID_PERCENT = 10
# Top-level folders of the docs that are mostly prose and code a user would read; c-api/whatsnew/distutils
# are huge, repetitive or dead and would push the corpus well past the ~5-7 MB we want to ship.
DOCS_FOLDERS = ("tutorial", "faq", "howto", "reference", "library", "using", "installing")
DOCS_ROOT_FILES = ("glossary.rst.txt",)
# Library pages left out: modules removed in 3.13 (PEP 594) or superseded, GUI/terminal toolkits and
# Windows-only modules. Keeps the library part to the modules a draft's users actually ask about.
LIBRARY_EXCLUDE = frozenset(
    "aifc asynchat asyncore audioop cgi cgitb chunk crypt imghdr imp mailcap msilib nis nntplib optparse "
    "ossaudiodev pipes smtpd sndhdr spwd sunau telnetlib uu xdrlib msvcrt winreg winsound idle 2to3 "
    "distutils turtle tk dialog".split()
)
LIBRARY_EXCLUDE_PREFIXES = ("tkinter", "curses")


def sources_dir(python_doc: Path) -> Path:
    """Accept either the `dpkg-deb -x` root or the `_sources` folder itself."""
    for cand in (python_doc, python_doc / "usr/share/doc/python3.11/html/_sources"):
        if (cand / "tutorial").is_dir() and (cand / "faq").is_dir():
            return cand
    raise FileNotFoundError(f"no Python docs _sources (tutorial/, faq/) under {python_doc}")


def docs_version(python_doc: Path) -> str:
    """Debian version of python3.11-doc, from the changelog shipped inside the package ("unknown" if absent)."""
    for parent in (python_doc, *python_doc.parents):
        log = parent / "usr/share/doc/python3.11-doc/changelog.Debian.gz"
        if not log.is_file():
            log = parent / "python3.11-doc/changelog.Debian.gz"  # `python_doc` was .../_sources
        if log.is_file():
            with gzip.open(log, "rt", encoding="utf-8") as f:
                m = re.match(r"\S+ \(([^)]+)\)", f.readline())
            return m.group(1) if m else "unknown"
    return "unknown"


def in_valid_split(key: str, percent: int) -> bool:
    """Stable across machines and Python runs (unlike hash()): sha1 of the key, bucketed into 100."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % 100 < percent


def write_jsonl_gz(path: Path, rows: Iterable[dict]) -> int:
    """Byte-reproducible gzip (mtime 0, no file name in the header) so rebuilds give identical files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _keep_doc(rel: Path) -> bool:
    if len(rel.parts) == 1:
        return rel.name in DOCS_ROOT_FILES
    if rel.parts[0] not in DOCS_FOLDERS:
        return False
    if rel.parts[0] == "library":
        stem = rel.name.removesuffix(".rst.txt")
        return stem not in LIBRARY_EXCLUDE and not stem.startswith(LIBRARY_EXCLUDE_PREFIXES)
    return True


def build_docs(src: Path) -> tuple[list[dict], list[dict]]:
    """(train, valid) rows `{"id": "library/json.rst", "text": ...}`, sorted by id for determinism."""
    train: list[dict] = []
    valid: list[dict] = []
    for path in sorted(src.rglob("*.rst.txt")):
        rel = path.relative_to(src)
        if not _keep_doc(rel):
            continue
        text = clean_rst(path.read_text(encoding="utf-8"))
        if len(text) < 200:  # index pages that were only a toctree
            continue
        doc_id = rel.as_posix().removesuffix(".txt")
        (valid if in_valid_split(doc_id, DOCS_VALID_PERCENT) else train).append({"id": doc_id, "text": text})
    return train, valid


@dataclass
class ChatterbotSource:
    """The English yml files of one chatterbot-corpus wheel (or unpacked package), read into memory."""

    label: str  # e.g. "chatterbot-corpus 1.3.3 (chatterbot_corpus-1.3.3-py2.py3-none-any.whl)"
    version: str
    files: dict[str, str]  # file name -> yml text
    metadata: str  # dist-info METADATA text: the wheel ships no licence file, its licence is declared here
    n_conversations: int = field(default=0)  # distinct English conversations


def _read_wheel(whl: Path) -> ChatterbotSource:
    with zipfile.ZipFile(whl) as z:
        names = sorted(z.namelist())
        files = {
            Path(n).name: z.read(n).decode("utf-8")
            for n in names
            if re.fullmatch(r"chatterbot_corpus/data/english/[^/]+\.yml", n)
        }
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta_name).decode("utf-8")
    version = re.search(r"^Version: (\S+)", metadata, re.M).group(1)  # type: ignore[union-attr]
    src = ChatterbotSource(f"chatterbot-corpus {version} ({whl.name})", version, files, metadata)
    # Distinct conversations: newer releases repeat some tech-support pairs 100+ times.
    src.n_conversations = len({tuple(map(str, c)) for t in files.values() for c in _load_yml(t)})
    return src


def _load_yml(text: str) -> list[list[str]]:
    # BaseLoader keeps every scalar a string: the default loader turns answers like "Yes" or "1963" into
    # True and 1963.
    return yaml.load(text, Loader=yaml.BaseLoader).get("conversations", [])  # noqa: S506


def load_chatterbot(path: Path) -> ChatterbotSource:
    """A wheel, or a folder of wheels: then the one with the most English conversations wins."""
    wheels = [path] if path.is_file() else sorted(path.glob("chatterbot_corpus-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no chatterbot_corpus-*.whl at {path}")
    return max((_read_wheel(w) for w in wheels), key=lambda s: s.n_conversations)


def _as_messages(turns: list[str]) -> list[dict[str, str]] | None:
    """Alternate user/assistant; a trailing user turn has no answer and is dropped."""
    turns = [t.strip() for t in turns]
    if any(not t for t in turns):
        return None
    if len(turns) % 2:
        turns = turns[:-1]
    if len(turns) < 2:
        return None
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def build_dialogues(cb: ChatterbotSource, docs_src: Path) -> tuple[list[dict], list[dict], dict[str, int]]:
    """(train, valid, counts). Exact duplicate conversations (common across chatterbot files) are kept once."""
    rows: list[dict] = []
    seen: set[tuple[str, ...]] = set()
    counts = {"chatterbot": 0, "python_faq": 0, "dropped_malformed": 0, "dropped_duplicate": 0}
    for name, text in sorted(cb.files.items()):
        for k, conv in enumerate(_load_yml(text)):
            msgs = _as_messages(list(conv))
            if msgs is None:
                counts["dropped_malformed"] += 1
                continue
            key = tuple(m["content"] for m in msgs)
            if key in seen:
                counts["dropped_duplicate"] += 1
                continue
            seen.add(key)
            stem = name.removesuffix(".yml")
            rows.append(
                {"id": f"chatterbot/{stem}/{k:04d}", "source": f"chatterbot/{name}", "messages": msgs}
            )
            counts["chatterbot"] += 1
    for path in sorted((docs_src / "faq").glob("*.rst.txt")):
        stem = path.name.removesuffix(".rst.txt")
        for k, (q, a) in enumerate(faq_pairs(path)):
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            rows.append(
                {"id": f"python-faq/{stem}/{k:03d}", "source": f"python-faq/{path.name}", "messages": msgs}
            )
            counts["python_faq"] += 1
    train = [r for r in rows if not in_valid_split(r["id"], DIALOGUES_VALID_PERCENT)]
    valid = [r for r in rows if in_valid_split(r["id"], DIALOGUES_VALID_PERCENT)]
    return train, valid, counts


def licenses_markdown(docs_src: Path, docs_version: str, cb: ChatterbotSource, counts: dict[str, int]) -> str:
    """LICENSES.md: what came from where, which versions, and the licence texts/declarations."""
    psf = (docs_src / "license.rst.txt").read_text(encoding="utf-8")
    # The PSF licence agreement is the part of license.rst that applies to the documentation text.
    start = psf.find("PSF LICENSE AGREEMENT FOR PYTHON")
    end = psf.find("BEOPEN.COM LICENSE AGREEMENT")
    psf_text = clean_rst(psf[start:end]) if start >= 0 and end > start else clean_rst(psf)
    release = docs_version.split("-")[0]  # Debian "3.11.2-6+deb12u9" -> upstream "3.11.2"
    psf_text = textwrap.dedent(psf_text.replace("|release|", release)).strip()
    cb_decl = "\n".join(
        line
        for line in cb.metadata.splitlines()
        if line.startswith(("Name:", "Version:", "Author", "License", "Classifier: License"))
    )
    return f"""# Licences of the shipped corpus and of what was trained on it

Everything under `data/embedded/` is derived from two openly licensed sources. The tokenizer and the two
tiny target models were trained here on the train splits of the corpus below (see `build_info.json`).

## Python documentation (`pydocs_*.jsonl.gz`, `python-faq/*` dialogues)

- Source: Debian package `python3.11-doc` {docs_version}, reStructuredText under
  `usr/share/doc/python3.11/html/_sources/`.
- Taken: tutorial, faq, howto, reference, using, installing, glossary and most of library (see
  `builders/corpus.py` for the exclusions), lightly cleaned of Sphinx markup. The {counts["python_faq"]}
  question/answer pairs in `dialogues_*` are the FAQ headings and the opening paragraphs of their answers.
- Copyright (c) 2001-2023 Python Software Foundation. All rights reserved. Licensed under the PSF
  License Agreement (the documentation is covered by the same licence as Python itself; see also the
  Debian copyright file `usr/share/doc/python3.11-doc/copyright`):

```text
{psf_text}
```

## chatterbot-corpus (`chatterbot/*` dialogues)

- Source: {cb.label} from PyPI,
  files `chatterbot_corpus/data/english/*.yml`.
- Taken: {counts["chatterbot"]} distinct English conversations as user/assistant turns. Dropped:
  {counts["dropped_duplicate"]} exact duplicates, {counts["dropped_malformed"]} without a full exchange.
- Author: Gunther Cox and contributors (https://github.com/gunthercox/chatterbot-corpus). The wheel ships no
  licence file; its metadata declares the BSD licence:

```text
{cb_decl}
```
"""
