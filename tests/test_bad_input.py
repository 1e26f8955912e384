"""Bad overrides, missing paths and a tokenizer that does not belong to the target fail early and clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tests.conftest import REPO, TINY_LLAMA, run_train
from train.drafts.eagle.head import EagleHead, EagleHeadConfig
from train.drafts.io import load_draft, save_draft
from train.modeling.target import FrozenTarget


def run_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train", *overrides, "logger=none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        # A hang guard, not a speed check: the refusal takes ~10 s on quiet cores, but a bare `import train`
        # took 86-107 s on 2 cores at load 25, and two cases hit a 120 s limit at load 6.
        timeout=300,
    )


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.max_steps=lots", "train.max_steps"),
        ("target.name_or_path=/nonexistent/llama", "/nonexistent/llama"),
        ("data.train_files=[/nonexistent/corpus.jsonl]", "/nonexistent/corpus.jsonl"),
    ],
)
def test_cli_fails_before_work_naming_the_problem(override: str, named: str) -> None:
    proc = run_cli(override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_rejects_unknown_key() -> None:
    proc = run_cli("train.max_stepz=3")
    assert proc.returncode != 0 and "max_stepz" in proc.stderr


def test_tokenizer_larger_than_target_vocab_is_refused(tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(TINY_LLAMA)
    tok.add_tokens([f"<extra_{i}>" for i in range(64)])
    tok.save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match="embedding rows"):
        FrozenTarget.load(str(TINY_LLAMA), tokenizer_path=str(tmp_path / "tok"))


def test_draft_from_another_tokenizer_is_refused(tmp_path: Path) -> None:
    head = EagleHead(
        EagleHeadConfig(hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=2, head_dim=16)
    )
    save_draft(
        head.state_dict(), head.config, tmp_path / "x", {"tokenizer_fingerprint": "aaaa", "target": "t"}
    )
    with pytest.raises(ValueError, match="tokenizer"):
        load_draft(tmp_path / "x", {"tokenizer_fingerprint": "bbbb", "target": "other"})
    loaded, _ = load_draft(tmp_path / "x", {"tokenizer_fingerprint": "aaaa", "target": "t"})
    assert all(
        (a == b).all() for a, b in zip(head.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


@pytest.mark.integration
def test_bad_data_on_two_ranks_exits_2_with_one_report(tmp_path: Path) -> None:
    """A ShareGPT file read as `messages` on 2 ranks: one line from rank 0, every rank exits 2, no tracebacks."""
    data = tmp_path / "sharegpt.jsonl"
    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    data.write_text("".join(json.dumps({"conversations": turns}) + "\n" for _ in range(30)))
    overrides = [
        f"target.name_or_path={TINY_LLAMA}", "data=embedded-dialogues", "data.format=messages",
        f"data.train_files=[{data}]", "data.valid_files=[]", "deepspeed=none", "logger=none",
        f"output_dir={tmp_path / 'out'}",
    ]  # fmt: skip
    proc = run_train(overrides, nproc=2, check=False)
    report = (
        f"all 30 records fail alike; the first, {data}:1: no 'messages' field but a 'conversations' field"
    )
    assert proc.stderr.count(report) == 1, proc.stderr[-3000:]
    assert "use data.format=sharegpt or auto" in proc.stderr
    # torchrun itself exits 1 whenever a rank fails; its summary lists each rank's own exit code.
    assert proc.returncode != 0 and proc.stderr.count("exitcode  : 2") == 2, proc.stderr[-3000:]
    # No traceback from our code on any rank (torchrun's own, from a virtual environment inside the repo, is
    # the launcher's summary, not ours).
    ours = [f'File "{REPO / package}/' for package in ("train", "data", "eval")]
    assert not any(frame in proc.stderr for frame in ours), proc.stderr[-3000:]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["draft_path=/nonexistent/export"], "draft_path=/nonexistent/export: no such folder"),
        (["draft_path={empty}"], "no config.json"),
        (["draft_path=random", "prompts.source=jsonl", "prompts.files=[/nonexistent/p.jsonl]"], "p.jsonl"),
        (["draft_path=random", "target.name_or_path=/nonexistent/llama"], "/nonexistent/llama"),
    ],
)
def test_eval_checks_inputs_before_loading(tmp_path: Path, overrides: list[str], named: str) -> None:
    (tmp_path / "empty").mkdir()
    args = [o.format(empty=tmp_path / "empty") for o in overrides]
    proc = subprocess.run(
        [sys.executable, "-m", "eval", f"target.name_or_path={TINY_LLAMA}", *args, "logger=none",
         f"output_dir={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert "Loading weights" not in proc.stderr  # failed before the target was loaded
