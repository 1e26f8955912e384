"""Each source kind and format loads from real files: JSONL(.gz), Parquet, text folders, HF datasets on disk
(including streaming), ShareGPT / OpenAI messages / raw text, auto-detected or named; max_tokens caps text."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from data.blocks import BuildSpec, build_blocks
from data.formats import record_messages, to_format
from data.sources import SourceSpec
from data.spec import load_data_config, split_spec
from data.validate import DataValidationError
from tests.conftest import EMBEDDED

CONVS = [
    [{"role": "user", "content": "What is a list?"}, {"role": "assistant", "content": "A mutable sequence."}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "And a tuple?"},
        {"role": "assistant", "content": "An immutable one."},
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "You are welcome."},
    ],
]
TEXTS = ["The quick brown fox jumps over the lazy dog. " * 20, "Python lists grow as needed. " * 30]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(EMBEDDED / "tokenizer")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def blocks(tok, files: list[Path] | None = None, fmt: str = "auto", seq_len: int = 64, **source):
    spec = BuildSpec(SourceSpec(files=[str(f) for f in files or []], **source), fmt, seq_len)
    return build_blocks(spec, tok)


def test_messages_and_sharegpt_give_the_same_tokens(tok, tmp_path: Path) -> None:
    oa = write_jsonl(tmp_path / "oa.jsonl", [{"messages": c} for c in CONVS])
    sg_rows = [to_format(c, "sharegpt") for c in CONVS]
    assert sg_rows[0]["conversations"][0] == {"from": "human", "value": "What is a list?"}
    sg = write_jsonl(tmp_path / "sg.jsonl.gz", sg_rows)
    a, b = blocks(tok, [oa]), blocks(tok, [sg])
    assert (a.report.format, b.report.format) == ("messages", "sharegpt")
    assert a.input_ids.equal(b.input_ids) and a.loss_mask.equal(b.loss_mask)
    assert a.input_ids.shape == (2, 64) and 0 < int(a.loss_mask.sum()) < 64
    named = blocks(tok, [sg], fmt="sharegpt")
    assert named.input_ids.equal(b.input_ids)


def test_sharegpt_role_content_variant() -> None:
    rec = {"conversations": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "yo"}]}
    assert [m["role"] for m in record_messages(rec, "sharegpt")] == ["user", "assistant"]


def test_parquet_text_folder_and_jsonl_text_pack_alike(tok, tmp_path: Path) -> None:
    jl = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in TEXTS])
    pq.write_table(pa.table({"text": TEXTS}), tmp_path / "t.parquet")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, t in enumerate(TEXTS):
        (folder / f"{i}.txt").write_text(t)
    ref = blocks(tok, [jl])
    assert ref.report.format == "text" and ref.loss_mask.all()
    for src in (tmp_path / "t.parquet", folder):
        assert blocks(tok, [src]).input_ids.equal(ref.input_ids), src


def test_max_tokens_caps_the_stream(tok, tmp_path: Path) -> None:
    jl = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in TEXTS * 4])
    full = blocks(tok, [jl], seq_len=32)
    capped = build_blocks(BuildSpec(SourceSpec(files=[str(jl)]), "text", 32, max_tokens=100), tok)
    assert len(capped) == 3 and capped.input_ids.equal(full.input_ids[:3])


def test_hf_dataset_on_disk_and_streaming(tok, tmp_path: Path) -> None:
    import datasets

    rows = {"messages": CONVS}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "saved"))
    saved = blocks(tok, hf_dataset=str(tmp_path / "saved"), split="train")
    # A local folder of data files read through `load_dataset`, streamed as a hub corpus would be.
    (tmp_path / "repo").mkdir()
    write_jsonl(tmp_path / "repo" / "train.jsonl", [{"messages": c} for c in CONVS])
    streamed = blocks(tok, hf_dataset=str(tmp_path / "repo"), split="train", streaming=True)
    ref = blocks(tok, [write_jsonl(tmp_path / "ref.jsonl", [{"messages": c} for c in CONVS])])
    assert saved.input_ids.equal(ref.input_ids) and streamed.input_ids.equal(ref.input_ids)
    assert saved.report.records == streamed.report.records == 2


def test_missing_field_is_named(tok, tmp_path: Path) -> None:
    jl = write_jsonl(tmp_path / "x.jsonl", [{"body": "no text field here"}])
    with pytest.raises(DataValidationError, match=r"x.jsonl:1: cannot tell the format"):
        blocks(tok, [jl])


def test_shipped_configs_resolve() -> None:
    for name in ("embedded-pydocs", "embedded-dialogues"):
        cfg = load_data_config(name, ["seq_len=128"])
        spec = split_spec(cfg, "train")
        assert spec is not None and spec.seq_len == 128 and Path(spec.source.files[0]).is_file()
