"""The ground floor every package shares (`data.target_io`, `data.atomic`, `data.fingerprint`) and the
eval report's batch-size plot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data.atomic import atomic_file, atomic_folder
from data.fingerprint import check_fingerprint
from data.target_io import eos_token_ids, load_target, pick_device
from eval.report import plot_batch_sizes
from tests.conftest import TINY_LLAMA


def test_atomic_folder_replaces_whole_or_leaves_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (out / "a.txt").read_text() == "one"  # the old folder, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary sibling left behind
    with atomic_folder(out) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # replaced, not merged


def test_atomic_file(tmp_path: Path) -> None:
    out = tmp_path / "vocab.safetensors"
    with pytest.raises(ValueError), atomic_file(out) as tmp:
        tmp.write_text("half")
        raise ValueError
    assert list(tmp_path.iterdir()) == []
    with atomic_file(out) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole" and list(tmp_path.iterdir()) == [out]


def test_fingerprint_check_names_both_sides() -> None:
    check_fingerprint("draft d", "tokenizer", "aaaa", "aaaa")
    check_fingerprint("draft d", "tokenizer", None, "aaaa")  # not recorded: nothing to compare
    with pytest.raises(
        ValueError, match=r"draft d was built for tokenizer aaaa \(x\), but this tokenizer is bbbb"
    ):
        check_fingerprint("draft d", "tokenizer", "aaaa", "bbbb", "x", "y")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_choice() -> None:
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="cuda"):
        pick_device("cuda")


def test_one_loader_and_stop_ids() -> None:
    model, tok = load_target(str(TINY_LLAMA))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    stop = eos_token_ids(model, tok)
    gen = model.generation_config.eos_token_id
    assert tok.eos_token_id in stop and set(gen if isinstance(gen, list) else [gen]) <= stop
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_target(str(TINY_LLAMA / "missing"))


@pytest.mark.parametrize("sizes", [[1], [1, 4]])
def test_batch_size_plot(sizes: list[int], tmp_path: Path) -> None:
    row = {"all": {"spec_tokens_per_s": 120.0, "baseline_tokens_per_s": 80.0, "tau": 2.5}}
    path = plot_batch_sizes(dict.fromkeys(sizes, row), tmp_path / "b.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
