"""The validation pass: every record is read, checked and tokenized before training sees any of it.

strict   : any bad record stops the run before step 0; the report lists each bad record once, as
           `file:line: reason`.
lenient  : bad records are skipped and counted; past `max_bad_fraction` of the records read, the run
           stops anyway, because a source that is mostly broken is a wrong source, not a noisy one.
Nothing is written here: callers write outputs only after this pass has returned.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from data.chat import encode_chat, fit_to_length
from data.formats import FORMATS, RecordError, check_conversation, detect_format, record_messages, record_text
from data.sources import RawRecord, SourceSpec, iter_records

MODES = ("strict", "lenient")


@dataclass
class Issue:
    where: str  # file:line
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Report:
    records: int = 0  # records read (good + bad)
    tokens: int = 0  # tokens kept, before packing
    format: str = "?"
    issues: list[Issue] = field(default_factory=list)
    truncated: int = 0  # chat records cut to seq_len (data.overlong=truncate)
    dropped: int = 0  # chat records left out as longer than seq_len (drop, or truncate leaving no answer)

    @property
    def bad(self) -> int:
        return len(self.issues)

    def summary(self) -> str:
        s = f"{self.records} records read ({self.format}), {self.bad} bad, {self.tokens} tokens kept"
        if self.truncated or self.dropped:
            s += f"; longer than seq_len: {self.truncated} truncated, {self.dropped} dropped (data.overlong)"
        return s

    def common_reason(self) -> str | None:
        """The reason every record failed for, when there is one (a wrong data.format): said once, not N times."""
        reasons = {i.reason for i in self.issues}
        return reasons.pop() if len(reasons) == 1 and self.bad == self.records > 1 else None

    def text(self, limit: int | None = None) -> str:
        shown = self.issues if limit is None else self.issues[:limit]
        lines = [self.summary(), *map(str, shown)]
        if len(shown) < len(self.issues):
            lines.append(f"... and {len(self.issues) - len(shown)} more")
        return "\n".join(lines)


class DataValidationError(ValueError):
    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Example:
    ids: list[int]
    mask: list[int] | None  # None = every token is trained on (raw text)
    where: str


def _chat_example(
    rec: RawRecord, fmt: str, tok: PreTrainedTokenizerBase, seq_len: int, overlong: str, report: Report
) -> Example | None:
    assert rec.data is not None
    messages = record_messages(rec.data, fmt)
    check_conversation(messages)
    ids, mask = encode_chat(tok, messages)
    if not any(mask):
        raise RecordError("loss mask is empty: the template rendered no assistant tokens")
    fitted = fit_to_length(ids, mask, seq_len, overlong)
    if fitted is None:
        report.dropped += 1
        return None
    report.truncated += len(fitted[0]) < len(ids)
    return Example(*fitted, rec.where)


def iter_examples(
    spec: SourceSpec,
    tokenizer: PreTrainedTokenizerBase,
    fmt: str,
    seq_len: int,
    max_tokens: int | None,
    report: Report,
    overlong: str = "error",
) -> Iterator[Example]:
    """Good examples in source order; each bad record is appended to `report.issues` exactly once.

    Chat records longer than seq_len follow `overlong` (data/chat.py OVERLONG), counted in the report."""
    if fmt not in FORMATS:
        raise ValueError(f"data.format={fmt!r}: expected one of {FORMATS}")
    text_batch: list[tuple[str, str]] = []  # raw text is tokenized in batches: ~10x faster than one by one
    pending_chars = 0  # flush by size too, so a small max_tokens budget does not tokenize a whole corpus

    def flush() -> Iterator[Example]:
        enc = tokenizer([t for t, _ in text_batch], add_special_tokens=False, verbose=False)["input_ids"]
        for ids, (_, where) in zip(enc, text_batch, strict=True):
            yield Example(ids, None, where)
        text_batch.clear()
        nonlocal pending_chars
        pending_chars = 0

    for rec in iter_records(spec):
        if max_tokens is not None and report.tokens >= max_tokens:
            break
        report.records += 1
        try:
            if rec.error is not None:
                raise RecordError(rec.error)
            assert rec.data is not None
            kind = fmt if fmt != "auto" else detect_format(rec.data, spec.text_field)
            if report.format == "?":
                report.format = kind  # auto: the first readable record decides; the rest must agree
            elif kind != report.format:
                raise RecordError(f"a {kind} record in a {report.format} data set")
            if kind == "text":
                text_batch.append((record_text(rec.data, spec.text_field), rec.where))
                pending_chars += len(text_batch[-1][0])
                if len(text_batch) == 256 or pending_chars >= 1 << 20:
                    for ex in flush():
                        report.tokens += len(ex.ids) + 1  # + the EOS that separates documents
                        yield ex
                continue
            ex = _chat_example(rec, kind, tokenizer, seq_len, overlong, report)
        except RecordError as err:
            report.issues.append(Issue(rec.where, str(err)))
            continue
        if ex is None:
            continue
        report.tokens += len(ex.ids)
        yield ex
    if text_batch:
        for ex in flush():
            report.tokens += len(ex.ids) + 1
            yield ex


def check_report(report: Report, mode: str, max_bad_fraction: float, what: str) -> None:
    """Raise for strict mode with any bad record, or lenient mode past the fraction; else warn."""
    if mode not in MODES:
        raise ValueError(f"data.validation={mode!r}: expected one of {MODES}")
    if report.records == 0:
        raise DataValidationError(f"{what}: no records read", report)
    if not report.issues:
        return
    if (reason := report.common_reason()) is not None:
        first = report.issues[0].where
        raise DataValidationError(
            f"{what}: all {report.records} records fail alike; the first, {first}: {reason}", report
        )
    if mode == "strict":
        raise DataValidationError(
            f"{what}: {report.bad} bad record(s); fix them or set data.validation=lenient\n{report.text()}",
            report,
        )
    fraction = report.bad / report.records
    if fraction > max_bad_fraction:
        raise DataValidationError(
            f"{what}: {report.bad} of {report.records} records are bad ({fraction:.1%} > "
            f"data.max_bad_fraction={max_bad_fraction:.1%})\n{report.text(limit=50)}",
            report,
        )
    print(
        f"[data] {what}: skipped {report.bad} bad record(s) (lenient)\n{report.text(limit=20)}",
        file=sys.stderr,
    )
