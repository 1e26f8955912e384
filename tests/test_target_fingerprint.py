"""Issue 22 item 4: a target is known by its weights. The hash covers every tensor (not a config and 32
embedding values), does not depend on the folder's path or sharding, is cached beside the model, and every
check (eval's chosen target, resume, exports, caches) accepts the same weights at another path and names both
fingerprints when they differ. Old artifacts that recorded only the probe still pass, with a warning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from data.fingerprint import (
    WeakFingerprintWarning,
    check_target,
    model_fingerprint,
    target_fingerprints,
)
from data.target_weights import CACHE_NAME, weights_fingerprint
from eval.config import EvalConfig
from eval.inputs import use_recorded_target
from tests.conftest import REPO, TINY_LLAMA
from train.drafts.io import EXPORT_FORMAT
from train.guards import resume_identity, resume_problems
from train.modeling.target import TargetConfig


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("targets")
    same = root / "moved" / "tiny-llama"
    shutil.copytree(TINY_LLAMA, same, ignore=shutil.ignore_patterns(CACHE_NAME))
    # In the dtype it is stored in (bf16): the same tensors, byte for byte.
    model = AutoModelForCausalLM.from_pretrained(TINY_LLAMA, dtype=torch.bfloat16)
    sharded = root / "sharded"
    model.save_pretrained(sharded, max_shard_size="2MB")  # the same weights in several files
    with torch.no_grad():  # a "fine-tune" that leaves the config and the probed embedding rows alone
        model.model.layers[-1].mlp.down_proj.weight.mul_(1.5)
    tuned = root / "tuned"
    model.save_pretrained(tuned)
    return {"same": same, "sharded": sharded, "tuned": tuned}


def test_the_weights_hash_sees_every_tensor_and_not_the_path(targets: dict[str, Path]) -> None:
    shipped = weights_fingerprint(str(TINY_LLAMA))
    assert shipped.startswith("weights:")
    assert len(list(targets["sharded"].glob("*.safetensors"))) > 1
    assert (
        weights_fingerprint(str(targets["same"])) == weights_fingerprint(str(targets["sharded"])) == shipped
    )
    assert weights_fingerprint(str(targets["tuned"])) != shipped
    # What the old fingerprint could not see: the tuned target passed as "the same target".
    probe = [model_fingerprint(AutoModelForCausalLM.from_pretrained(p, dtype="float32"))
             for p in (TINY_LLAMA, targets["tuned"])]  # fmt: skip
    assert probe[0] == probe[1]


def test_the_hash_is_cached_beside_the_model_keyed_by_size_and_mtime(targets: dict[str, Path]) -> None:
    folder = targets["same"]
    first = weights_fingerprint(str(folder))
    cache = folder / CACHE_NAME
    record = json.loads(cache.read_text())
    assert record["fingerprint"] == first and record["bytes"] > 0
    record["fingerprint"] = "weights:" + "0" * 16  # a planted value proves the cache is what is read
    cache.write_text(json.dumps(record))
    assert weights_fingerprint(str(folder)) == "weights:" + "0" * 16
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    assert weights_fingerprint(str(folder)) == first  # a rewritten file (new mtime) is hashed again


def _export(tmp_path: Path, target: Path, fingerprint: str) -> Path:
    export = tmp_path / "export"
    export.mkdir()
    meta = {"target": str(target), "tokenizer": str(target), "target_fingerprint": fingerprint}
    (export / "config.json").write_text(json.dumps({"format": EXPORT_FORMAT, "head": {}, "meta": meta}))
    return export


def test_eval_accepts_the_same_weights_at_another_path_and_names_both_otherwise(
    targets: dict[str, Path], tmp_path: Path
) -> None:
    gone = tmp_path / "cluster" / "tiny-llama"  # where the draft was trained: not on this machine
    export = _export(tmp_path, gone, weights_fingerprint(str(TINY_LLAMA)))
    moved = EvalConfig(target=TargetConfig(name_or_path=str(targets["same"])), draft_path=str(export))
    got = use_recorded_target(moved, {"target.name_or_path"}).target
    assert (got.name_or_path, got.tokenizer) == (str(targets["same"]), None)  # its own tokenizer
    tuned = EvalConfig(target=TargetConfig(name_or_path=str(targets["tuned"])), draft_path=str(export))
    with pytest.raises(
        ValueError, match=rf"has weights weights:\w+, but draft .* trained against {gone} \(weights:"
    ):
        use_recorded_target(tuned, {"target.name_or_path"})
    # Without target=, the recorded path that is not here is named with what would be accepted instead.
    with pytest.raises(FileNotFoundError, match=rf"{gone} \(weights:\w+\), which does not exist here"):
        use_recorded_target(moved, set())


def test_python_m_eval_refuses_other_weights_with_one_line(targets: dict[str, Path], tmp_path: Path) -> None:
    export = _export(tmp_path, TINY_LLAMA, weights_fingerprint(str(TINY_LLAMA)))
    (export / "model.safetensors").write_bytes(b"")  # never read: the refusal comes first
    proc = subprocess.run([sys.executable, "-m", "eval", f"draft_path={export}",
                           f"target.name_or_path={targets['tuned']}", "logger=none"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: target.name_or_path={targets['tuned']} has weights"
    )


def _fingerprint(path: Path) -> dict[str, str]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    return {"target": str(path), **target_fingerprints(str(path), model)}


def test_resume_accepts_the_same_weights_at_another_path(targets: dict[str, Path]) -> None:
    def identity(fp: dict[str, str]) -> dict[str, str]:
        return resume_identity({**fp, "tokenizer_fingerprint": "t"}, 64, 2, 4, 1)

    saved = identity(_fingerprint(TINY_LLAMA))
    assert resume_problems(saved, identity(_fingerprint(targets["same"])), []) == []
    [problem] = resume_problems(saved, identity(_fingerprint(targets["tuned"])), [])
    assert (
        problem.startswith(f"target: checkpoint {TINY_LLAMA} (weights:") and str(targets["tuned"]) in problem
    )
    # A checkpoint written before the weights hash ("PATH (probe)") still resumes on the same target.
    old = {**saved, "target": f"{TINY_LLAMA} ({_fingerprint(TINY_LLAMA)['target_probe_fingerprint']})"}
    with pytest.warns(WeakFingerprintWarning):
        assert resume_problems(old, identity(_fingerprint(targets["same"])), []) == []


def test_old_exports_pass_on_their_probe_with_a_warning(targets: dict[str, Path]) -> None:
    here = _fingerprint(TINY_LLAMA)
    old = {"target": "/somewhere/tiny-llama", "target_fingerprint": here["target_probe_fingerprint"]}
    with pytest.warns(WeakFingerprintWarning, match="old config-and-probe kind"):
        check_target("draft d", old, here)
    new = {"target": "/somewhere/tiny-llama", "target_fingerprint": here["target_fingerprint"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_target("draft d", new, _fingerprint(targets["sharded"]))
    with pytest.raises(
        ValueError, match=r"built for target /somewhere/tiny-llama \(weights:\w+\), but this target"
    ):
        check_target("draft d", new, _fingerprint(targets["tuned"]))
