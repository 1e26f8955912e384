"""`python -m data regenerate` and `cache` on the defaults: answers in the input's chat format, seeded sampling, resume after a kill."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from data.formats import to_format
from data.regenerate import RegenJob, run_regenerate
from data.sources import SourceSpec
from tests.conftest import EMBEDDED, REPO, TINY_LLAMA


def prompts_file(tmp_path: Path, n: int = 8) -> Path:
    rows = []
    with gzip.open(EMBEDDED / "corpus" / "dialogues_valid.jsonl.gz", "rt") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    out = tmp_path / "prompts.jsonl"
    # ShareGPT in, ShareGPT out: the format of the input is kept.
    out.write_text(
        "".join(json.dumps({"id": r["id"], **to_format(r["messages"], "sharegpt")}) + "\n" for r in rows)
    )
    return out


def job(src: Path, out: Path) -> RegenJob:
    return RegenJob(str(TINY_LLAMA), SourceSpec(files=[str(src)]), str(out), batch_size=4, max_new_tokens=12,
                    temperature=0.8, seed=1, progress=False)  # fmt: skip


def test_regenerate_resumes_to_the_same_output(tmp_path: Path) -> None:
    src = prompts_file(tmp_path)
    ref_out = tmp_path / "ref.jsonl"
    stats = run_regenerate(job(src, ref_out))
    assert stats["prompts"] == 8 and stats["new_tokens"] > 0
    ref = ref_out.read_text().splitlines(keepends=True)
    first = json.loads(ref[0])
    assert first["conversations"][-1]["from"] == "gpt" and first["conversations"][-1]["value"]
    assert first["id"] and first["origin"].endswith("prompts.jsonl:1")
    # Killed after the first batch, mid-way through writing the second.
    out = tmp_path / "resumed.jsonl"
    Path(str(out) + ".partial").write_text("".join(ref[:4]) + ref[4][:20])
    stats = run_regenerate(job(src, out))
    assert stats["generated"] == 4
    assert out.read_text() == "".join(ref) and not Path(str(out) + ".partial").exists()


def test_cli_regenerate_on_the_default_dialogues(tmp_path: Path) -> None:
    out = tmp_path / "regen.jsonl"
    cmd = [sys.executable, "-m", "data", "regenerate", "--target", str(TINY_LLAMA), "--data", "embedded-dialogues",
           "--split", "valid", "--out", str(out), "--limit", "4", "--max-new-tokens", "8"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["prompts"] == 4


def test_cli_cache_on_the_default_corpus(tmp_path: Path) -> None:
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "data", "cache", "--target", str(TINY_LLAMA), "--data", "embedded-pydocs",
           "--out", str(out), "--no-valid", "--layers=2,-1", "max_tokens=2048", "seq_len=64"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["layers"] == [2, 4] and summary["bytes_per_token"] == 2 * 256 * 2 + 5  # bf16 by default
    assert (out / "manifest.json").is_file() and len(list((out / "train").glob("*.safetensors"))) == 1
