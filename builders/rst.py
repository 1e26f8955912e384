"""Light clean-up of Sphinx reStructuredText and extraction of the FAQ question/answer pairs.

The goal is text a small LM can learn from: prose and code stay, Sphinx machinery (index entries, labels,
toctrees, author lines) goes, inline roles and links are reduced to the words a reader would see.
"""

from __future__ import annotations

import re
from pathlib import Path

# Whole blocks (directive line + indented body) that carry no prose a reader of the HTML would see.
_DROP_DIRECTIVES = {
    "index", "toctree", "contents", "highlight", "tabularcolumns", "include", "literalinclude", "testsetup",
    "testcleanup", "module", "moduleauthor", "sectionauthor", "currentmodule", "audit-event", "only",
    "raw", "csv-table", "image", "figure", "productionlist", "sidebar",
}  # fmt: skip
# Code directives: the directive line is noise, the indented body is code worth keeping.
_CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "doctest", "testcode", "testoutput", "parsed-literal"}
_DIRECTIVE_RE = re.compile(r"^(\s*)\.\.\s+([a-zA-Z][\w:-]*)::(.*)$")
# `.. _label:`, `.. |subst| ...`, footnote/citation targets are markup, not text.
_TARGET_RE = re.compile(r"^\s*\.\.\s+(_[^:]*:|\|[^|]+\|)")
_COMMENT_RE = re.compile(r"^(\s*)\.\.(\s.*)?$")
_FIELD_RE = re.compile(r"^\s*:[\w-]+:(\s.*)?$")
_ROLE_RE = re.compile(r":(?:[a-zA-Z]+:)?([a-zA-Z-]+):`([^`]+)`")
_LINK_RE = re.compile(r"`([^`<]+?)\s*<[^>`]+>`__?")
_NAMED_LINK_RE = re.compile(r"`([^`]+)`__?(?![\w`])")
_FOOTNOTE_REF_RE = re.compile(r"\s?\[#?[\w-]*\]_")
_LITERAL_RE = re.compile(r"``(.+?)``")
_TITLE_TARGET_RE = re.compile(r"(.*?)\s*<([^<>]+)>", re.S)
# A heading underline: one repeated punctuation character.
_UNDERLINE_RE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def _render_role(m: re.Match[str]) -> str:
    role, body = m.group(1), m.group(2)
    titled = _TITLE_TARGET_RE.fullmatch(body)
    text = (titled.group(1) or titled.group(2)) if titled else body
    text = text.lstrip("!")
    if text.startswith("~"):  # Sphinx shows only the last dotted component for `~a.b.c`.
        text = text[1:].rsplit(".", 1)[-1]
    if role == "pep":
        return f"PEP {text}"
    if role == "rfc":
        return f"RFC {text}"
    if role == "issue":
        return f"bpo-{text}"
    if role == "gh":
        return f"gh-{text}"
    if role in ("func", "meth") and not text.endswith(")"):
        return f"{text}()"
    return text


def clean_inline(text: str) -> str:
    """Reduce inline markup (roles, links, footnote refs, ``literals``) to what a reader sees."""
    text = _ROLE_RE.sub(_render_role, text)
    text = _LINK_RE.sub(r"\1", text)
    text = _NAMED_LINK_RE.sub(r"\1", text)
    text = _FOOTNOTE_REF_RE.sub("", text)
    # Single backticks, markdown style, so docs and chat answers share one convention for code.
    return _LITERAL_RE.sub(r"`\1`", text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _skip_block(lines: list[str], i: int, base: int) -> int:
    """Index of the first line after the block starting at `i` (its body is indented deeper than `base`)."""
    i += 1
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        i += 1
    return i


def clean_rst(source: str) -> str:
    """Drop Sphinx-only lines/blocks and simplify inline markup; keep prose, signatures and code."""
    lines = source.expandtabs(8).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        d = _DIRECTIVE_RE.match(line)
        if d:
            base = _indent(line)
            if d.group(2).split(":")[-1] in _DROP_DIRECTIVES:
                i = _skip_block(lines, i, base)
                continue
            if d.group(2) not in _CODE_DIRECTIVES:
                out.append(line.rstrip())
            i += 1
            # Directive options (`:noindex:`, `:synopsis: ...`) sit right under the directive line.
            while (
                i < len(lines) and lines[i].strip() and _FIELD_RE.match(lines[i]) and _indent(lines[i]) > base
            ):
                i += 1
            continue
        if _TARGET_RE.match(line) or _COMMENT_RE.match(line):
            # Labels, substitutions and comments (`.. anything` that is not a directive).
            i = _skip_block(lines, i, _indent(line))
            continue
        if not out and _FIELD_RE.match(line):  # file-level fields such as `:tocdepth: 2`
            i += 1
            continue
        out.append(line.rstrip())
        i += 1
    # Inline markup is cleaned on the whole text because roles and links often wrap across lines.
    text = clean_inline("\n".join(out))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _is_heading(lines: list[str], i: int, char: str) -> bool:
    """`lines[i]` is a heading title underlined with `char` (not an overline, not a table rule)."""
    if i + 1 >= len(lines) or not lines[i].strip() or _UNDERLINE_RE.match(lines[i]):
        return False
    under = _UNDERLINE_RE.match(lines[i + 1])
    return bool(under) and under.group(1) == char and len(lines[i + 1].rstrip()) >= len(lines[i].rstrip())


def _any_heading(lines: list[str], i: int) -> bool:
    return any(_is_heading(lines, i, c) for c in "=-~^")


def _first_paragraphs(body: str, max_chars: int) -> str:
    """Leading paragraphs of an answer, up to `max_chars`; a too-long first paragraph is cut at a sentence.

    Several FAQ answers open with a bare "Yes." or "No.", so a single paragraph is not always enough.
    """
    paras = [p.strip("\n") for p in re.split(r"\n\s*\n", body) if p.strip()]
    kept: list[str] = []
    total = 0
    for p in paras:
        if kept and total + len(p) + 2 > max_chars:
            break
        kept.append(p)
        total += len(p) + 2
        if total >= max_chars // 3:  # enough substance; stop at a paragraph boundary
            break
    # A kept paragraph ending in ":" announces something we cut off (usually an example).
    while len(kept) > 1 and kept[-1].rstrip().endswith(":"):
        kept.pop()
    if not kept:
        return ""
    if len(kept) == 1 and len(kept[0]) > max_chars:
        cut = kept[0][:max_chars]
        end = max(cut.rfind(". "), cut.rfind(".\n"))
        kept[0] = cut[: end + 1] if end > max_chars // 3 else cut.rsplit(" ", 1)[0] + " ..."
    text = "\n\n".join(kept)
    # `Example::` introduces a literal block in rst; in a chat answer a plain colon reads right.
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.M)


def faq_pairs(path: Path, max_answer_chars: int = 600) -> list[tuple[str, str]]:
    """(question, answer) pairs from one FAQ page: every `---`-underlined heading is a question."""
    lines = clean_rst(path.read_text(encoding="utf-8")).splitlines()
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        if not _is_heading(lines, i, "-"):
            i += 1
            continue
        question = lines[i].strip()
        j = i + 2
        while j < len(lines) and not _any_heading(lines, j):
            j += 1
        answer = _first_paragraphs("\n".join(lines[i + 2 : j]), max_answer_chars)
        if answer:
            pairs.append((question, answer))
        i = j
    return pairs
