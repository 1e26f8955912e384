"""200 mutated records mixed into 1,000 good ones: strict reports each once (file, line, reason), lenient skips
and counts them, and the good records tokenize byte-identically to a clean file."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data.blocks import BuildSpec, build_blocks
from data.sources import SourceSpec
from data.validate import DataValidationError
from tests.conftest import EMBEDDED

CORPUS = EMBEDDED / "corpus"
SEQ_LEN = 512


def good_records() -> list[str]:
    lines = []
    for name in ("dialogues_train.jsonl.gz", "dialogues_valid.jsonl.gz"):
        with gzip.open(CORPUS / name, "rt", encoding="utf-8") as f:
            lines.extend(line.rstrip("\n") for line in f)
    return lines[:1000]


def _msgs(*turns: tuple[str, object]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]})


# (raw line bytes, expected reason substring): each kind of mistake a user's file really contains.
MUTATIONS: list[tuple[bytes, str]] = [
    (b'{"messages": [{"role": "user", "content": "hi"}', "bad JSON"),
    (b'{"messages": [{"role": "user", "content": "caf\xff"}]}', "invalid UTF-8"),
    (b'[{"role": "user", "content": "hi"}]', "not an object"),
    (_msgs().encode(), "'messages' is empty"),
    (_msgs(("user", "hi"), ("robot", "beep")).encode(), "unknown role 'robot'"),
    (_msgs(("assistant", "hello"), ("user", "hi")).encode(), "assistant turn before any user turn"),
    (_msgs(("user", "hi"), ("user", "again"), ("assistant", "yes")).encode(), "both user"),
    (_msgs(("user", "hi"), ("assistant", 42)).encode(), "not a string"),
    (_msgs(("user", "hi"), ("assistant", "  ")).encode(), "is empty"),
    (_msgs(("user", "word " * 600), ("assistant", "ok")).encode(), "longer than data.seq_len=512"),
    (_msgs(("system", "be nice")).encode(), "only a system prompt"),
    (_msgs(("user", "anyone?")).encode(), "no assistant turn"),
    (b'{"messages": [{"role": "user"}]}', "has no 'content'"),
    (b'{"text": "plain prose"}', "a text record in a messages data set"),
    (
        _msgs(("user", "hi"), ("assistant", "yo"), ("system", "late")).encode(),
        "system prompt after the first",
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, str]]:
    good = good_records()
    rng = random.Random(0)
    lines: list[bytes] = [g.encode() for g in good]
    # Insert 200 bad lines at random places; the first line stays good so `auto` sees a chat data set.
    for k in range(200):
        lines.insert(rng.randint(1, len(lines)), MUTATIONS[k % len(MUTATIONS)][0])
    expected = {}
    reasons = dict(MUTATIONS)
    for lineno, line in enumerate(lines, start=1):
        if line in reasons:
            expected[lineno] = reasons[line]
    d = tmp_path_factory.mktemp("validation")
    (d / "clean.jsonl").write_bytes(b"\n".join(g.encode() for g in good) + b"\n")
    (d / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return d / "clean.jsonl", d / "mixed.jsonl", expected


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(EMBEDDED / "tokenizer")


def spec(path: Path, mode: str, fraction: float = 0.2) -> BuildSpec:
    # overlong=error: the over-long mutation is one of the bad records counted here.
    return BuildSpec(SourceSpec(files=[str(path)]), "auto", SEQ_LEN, None, None, mode, fraction, "error")


def test_strict_reports_each_bad_record_once(files, tok) -> None:
    _, mixed, expected = files
    with pytest.raises(DataValidationError) as err:
        build_blocks(spec(mixed, "strict"), tok)
    report = err.value.report
    assert (report.records, report.bad) == (1200, 200)
    got = {int(i.where.rsplit(":", 1)[1]): i.reason for i in report.issues}
    assert len(got) == 200 and set(got) == set(expected)
    for lineno, reason in expected.items():
        assert reason in got[lineno], (lineno, got[lineno])
    message = str(err.value)
    assert f"{mixed}:{min(expected)}: " in message and "data.validation=lenient" in message


def test_lenient_skips_counts_and_keeps_good_records_identical(files, tok) -> None:
    clean, mixed, _ = files
    a = build_blocks(spec(clean, "strict"), tok)
    b = build_blocks(spec(mixed, "lenient"), tok)
    assert (b.report.records, b.report.bad, len(b)) == (1200, 200, 1000)
    assert a.input_ids.numpy().tobytes() == b.input_ids.numpy().tobytes()
    assert a.loss_mask.numpy().tobytes() == b.loss_mask.numpy().tobytes()


def test_lenient_aborts_past_the_fraction(files, tok) -> None:
    _, mixed, _ = files
    with pytest.raises(DataValidationError, match="200 of 1200 records are bad"):
        build_blocks(spec(mixed, "lenient", fraction=0.1), tok)


@pytest.mark.parametrize(
    ("record", "fmt", "hint"),
    [
        (
            {"conversations": [{"from": "human", "value": "hi"}]},
            "messages",
            "use data.format=sharegpt or auto",
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, "sharegpt", "use data.format=messages or auto"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "text", "use data.format=messages or auto"),
        ({"text": "prose"}, "messages", "use data.format=text or auto"),
        ({"messages": [{"from": "human", "value": "hi"}]}, "messages", "use data.format=sharegpt"),
    ],
)
def test_a_wrong_format_is_one_line_naming_the_right_one(tmp_path: Path, tok, record, fmt, hint) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text((json.dumps(record) + "\n") * 1000)
    bad = BuildSpec(SourceSpec(files=[str(path)]), fmt, SEQ_LEN)
    with pytest.raises(DataValidationError) as err:
        build_blocks(bad, tok)
    message = str(err.value)
    assert message.startswith(f"data: all 1000 records fail alike; the first, {path}:1: ") and hint in message
    assert len(message.splitlines()) == 1  # not 1000 copies of the same reason
