"""data.overlong: a chat record longer than data.seq_len is truncated (default), dropped, or an error, and the
report counts what happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data.blocks import BuildSpec, build_blocks
from data.chat import encode_chat
from data.sources import SourceSpec
from data.validate import DataValidationError
from tests.conftest import EMBEDDED, REPO

SEQ_LEN = 64
SHORT = [
    [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"answer {i}."}]
    for i in range(4)
]
# Line 3: a long answer; the cut falls inside it, so its first tokens stay in the loss.
LONG_ANSWER = [
    {"role": "user", "content": "Tell me a story."},
    {"role": "assistant", "content": "once " * 80},
]
# Line 5: the prompt alone is past seq_len: nothing trained survives the cut.
LONG_PROMPT = [{"role": "user", "content": "why " * 80}, {"role": "assistant", "content": "Because."}]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(EMBEDDED / "tokenizer")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [SHORT[0], SHORT[1], LONG_ANSWER, SHORT[2], LONG_PROMPT, SHORT[3]]
    f = tmp_path_factory.mktemp("overlong") / "chat.jsonl"
    f.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    return f


def build(path: Path, tok, overlong: str | None):
    extra = {} if overlong is None else {"overlong": overlong}
    return build_blocks(BuildSpec(SourceSpec(files=[str(path)]), "auto", SEQ_LEN, **extra), tok)


def test_default_truncates_the_loss_window(data_file: Path, tok) -> None:
    b = build(data_file, tok, None)  # the default is truncate
    full_ids, full_mask = encode_chat(tok, LONG_ANSWER)
    assert len(full_ids) > SEQ_LEN and sum(full_mask[:SEQ_LEN]) > 0
    assert (b.report.truncated, b.report.dropped, b.report.bad, len(b)) == (1, 1, 0, 5)
    row = 2  # chat blocks keep source order: short, short, long answer, ...
    assert b.input_ids[row].tolist() == full_ids[:SEQ_LEN]
    assert b.loss_mask[row].tolist() == full_mask[:SEQ_LEN]
    assert "1 truncated, 1 dropped" in b.report.summary()


def test_drop_leaves_both_out_and_counts_them(data_file: Path, tok) -> None:
    b = build(data_file, tok, "drop")
    assert (b.report.truncated, b.report.dropped, b.report.bad, len(b)) == (0, 2, 0, 4)
    truncated = build(data_file, tok, "truncate")
    # The short records (lines 1, 2, 4, 6) give the same blocks whatever the policy.
    assert b.input_ids.tolist() == truncated.input_ids[[0, 1, 3, 4]].tolist()


def test_error_names_file_and_line(data_file: Path, tok) -> None:
    with pytest.raises(DataValidationError) as err:
        build(data_file, tok, "error")
    assert {i.where for i in err.value.report.issues} == {f"{data_file}:3", f"{data_file}:5"}
    assert f"{data_file}:3: " in str(err.value) and "data.overlong" in str(err.value)


def _validate_cli(data_file: Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    conf = tmp_path / "chat.yaml"
    conf.write_text(f"train_files: [{data_file}]\nseq_len: {SEQ_LEN}\n")
    cmd = [sys.executable, "-m", "data", "validate", "--tokenizer", str(EMBEDDED / "tokenizer")]
    return subprocess.run(
        [*cmd, "--data", str(conf), *overrides], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_validate_command_reports_counts_and_error_exits_2(data_file: Path, tmp_path: Path) -> None:
    ok = _validate_cli(data_file, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "1 truncated, 1 dropped" in ok.stdout
    bad = _validate_cli(data_file, tmp_path, "overlong=error")
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert f"{data_file}:3: " in bad.stderr and "Traceback" not in bad.stderr
