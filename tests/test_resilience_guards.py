"""Guards: non-finite steps skipped in lockstep and the run stopped after M in a row; damaged checkpoints
named and passed over; drift refused on resume; a rank failing mid-save ends every rank quickly."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_train, short_run_overrides
from tests.test_resilience_resume import overrides, reference_run, spawn_ranks, wait_until
from train.checkpoint import TMP_SUFFIX, _prune, latest_checkpoint
from train.guards import RESUME_KEYS, resume_identity, resume_problems

EXIT_NONFINITE, EXIT_RESUME_REFUSED = 76, 78  # train/preemption.py


def _model_and_optimizer(ckpt: Path) -> dict:
    return torch.load(ckpt / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)


@pytest.mark.integration
def test_nonfinite_loss_on_one_rank_is_skipped_by_both_and_stops_after_m(
    small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "nan"
    faults = {"nan_loss": {"rank": 1, "steps": [3, 5, 6, 7]}}
    args = [
        *short_run_overrides(small_corpus, out, steps=10),
        "deepspeed=zero0",  # ZeRO 1-3 also refuse NaN gradients themselves; stage 0 relies on our skip alone
        "train.save_every=1",
        "train.keep_checkpoints=20",
        "train.max_consecutive_skips=3",
    ]
    procs = spawn_ranks(args, tmp_path / "logs", {"DRAFTFORGE_TEST_FAULTS": json.dumps(faults)})
    codes = [p.wait(timeout=300) for p in procs]
    logs = [(tmp_path / "logs" / f"rank{r}.out").read_text() for r in range(2)]
    assert codes == [EXIT_NONFINITE, EXIT_NONFINITE], (codes, logs[0][-3000:])
    for r, log in enumerate(logs):  # rank 0 never saw a NaN, yet skips exactly the same steps
        skipped = [int(x.split("step ")[1].split(" ")[0]) for x in log.splitlines() if "[guard]" in x]
        assert skipped == [3, 5, 6, 7], (r, skipped)
    ckpts = out / "checkpoints"
    before, after = (
        _model_and_optimizer(ckpts / "step_00000002"),
        _model_and_optimizer(ckpts / "step_00000003"),
    )
    for k, v in before["module"].items():
        assert torch.equal(v, after["module"][k]), f"skipped step 3 changed weight {k}"
    for i, st in before["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(after["optimizer"]["state"][i][k])), (i, k)
    assert before["lr_scheduler"]["last_epoch"] == after["lr_scheduler"]["last_epoch"]
    m = {json.loads(x)["step"]: json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()}
    assert (
        m[3]["train/skipped_steps"] == 1
        and "train/loss" not in m[3]
        and m[4]["train/loss"] == m[4]["train/loss"]
    )
    # Stopped at step 7 without saving it: the newest checkpoint is the last one before the streak ended.
    assert not (ckpts / "step_00000007").exists() and (ckpts / "step_00000006" / "manifest.json").is_file()
    assert not (out / "export").exists()


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["error", "hang"])
def test_failure_on_one_rank_during_save_ends_both_within_60s(
    fault: str, small_corpus: Path, tmp_path: Path
) -> None:
    """error: rank 1 raises mid-save. hang: rank 1 stops mid-save without dying (its sockets stay open), so
    only the watchdog (train.watchdog_s) can end it, and rank 0 follows."""
    out = tmp_path / "fail"
    args = [*short_run_overrides(small_corpus, out, steps=4), "train.save_every=2", "deepspeed=zero1"]
    if fault == "error":
        faults = {"save_error": {"rank": 1, "step": 2}}
    else:
        faults = {"save_sleep": {"rank": 1, "step": 2, "seconds": 3600}}
        args += ["train.watchdog_s=10", "train.collective_timeout_s=120"]
    procs = spawn_ranks(args, tmp_path / "logs", {"DRAFTFORGE_TEST_FAULTS": json.dumps(faults)})
    try:
        wait_until(lambda: (out / "checkpoints" / "step_00000002.tmp" / "rank1.pt").exists(), procs=procs)
        failed_at = time.time()
        codes = [p.wait(timeout=max(1.0, 60 - (time.time() - failed_at))) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / "logs" / f"rank{r}.out").read_text() for r in range(2)]
    assert all(c != 0 for c in codes), (codes, logs[1][-2000:])
    assert time.time() - failed_at < 60
    expected = "injected save failure on rank 1" if fault == "error" else "Timeout (0:00:10)!"
    assert expected in logs[1], logs[1][-2000:]
    assert not (out / "checkpoints" / "step_00000002").exists()  # never published


def _batch(micro: int, accum: int, world: int) -> str:
    return resume_identity({}, None, world, micro, accum)["batch_size"]


def test_resume_problems_name_old_and_new_values() -> None:
    old = {**{k: f"old-{k}" for k in RESUME_KEYS}, "batch_size": _batch(4, 1, 2)}
    changed = {**{k: f"new-{k}" for k in RESUME_KEYS}, "batch_size": _batch(4, 1, 1)}
    for key in RESUME_KEYS:
        new = {**old, key: changed[key]}
        assert resume_problems(old, new, []) == [f"{key}: checkpoint {old[key]}, now {new[key]}"]
        assert resume_problems(old, new, [key]) == []
    with pytest.raises(ValueError, match="resume_allow_changes"):
        resume_problems(old, old, ["learning_rate"])


def test_same_global_batch_from_other_factors_is_not_a_batch_change() -> None:
    old = {"batch_size": _batch(8, 1, 2)}
    for micro, accum, world in ((8, 2, 1), (4, 4, 1), (2, 1, 8)):
        assert resume_problems(old, {"batch_size": _batch(micro, accum, world)}, []) == [], (micro, accum)
    assert resume_problems(old, {"batch_size": _batch(8, 1, 1)}, []) == [
        "batch_size: checkpoint 16 sequences/step (micro 8 x accum 1 x world 2), "
        "now 8 sequences/step (micro 8 x accum 1 x world 1)"
    ]
    # A world-size change needs no permission any more; old command lines that grant it still run.
    assert resume_problems(old, {"batch_size": _batch(8, 2, 1)}, ["world_size"]) == []


@pytest.mark.integration
def test_resume_with_another_global_batch_is_refused_with_the_way_out(
    small_corpus: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory, small_corpus), run)
    proc = run_train(
        [*overrides(small_corpus, run, "resume=true"), "deepspeed=none", "train.micro_batch_size=2"],
        nproc=1,
        check=False,
    )
    assert proc.returncode == EXIT_RESUME_REFUSED, proc.stderr[-2000:]
    refusal = [line for line in proc.stderr.splitlines() if "refusing" in line]
    assert len(refusal) == 1, proc.stderr[-2000:]
    assert (
        "batch_size: checkpoint 8 sequences/step (micro 4 x accum 1 x world 2), now 2 sequences" in refusal[0]
    )
    assert "train.global_batch_size=8 (or train.grad_accum=4)" in refusal[0]
    assert "Traceback" not in proc.stderr
    assert "world_size" not in refusal[0] and "tokenizer" not in refusal[0]  # what may change is not reported


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    return reference_run(tmp_path_factory, small_corpus) / "checkpoints"


def _damage(kind: str, newest: Path) -> str:
    """Damage the newest checkpoint; returns the reason resume must give."""
    if kind == "truncate":
        f = newest / "mp_rank_00_model_states.pt"
        f.write_bytes(f.read_bytes()[:1000])
        return "mp_rank_00_model_states.pt has 1000 bytes"
    if kind == "missing_shard":
        (newest / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
        return "missing zero_pp_rank_1_mp_rank_00_optim_states.pt"
    if kind == "flipped_byte":
        f = newest / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
        data = bytearray(f.read_bytes())
        data[100] ^= 0x01
        f.write_bytes(bytes(data))
        return "zero_pp_rank_0_mp_rank_00_optim_states.pt: sha256 differs"
    if kind == "no_manifest":
        (newest / "manifest.json").unlink()
        return "no manifest.json"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncate", "missing_shard", "flipped_byte", "no_manifest"])
def test_damaged_newest_checkpoint_falls_back_to_previous_with_reason(
    kind: str, checkpoints: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(checkpoints, run / "checkpoints")
    newest = run / "checkpoints" / "step_00000016"
    reason = _damage(kind, newest)
    (run / "checkpoints" / ("step_00000020" + TMP_SUFFIX)).mkdir()  # a leftover temporary folder
    said: list[str] = []
    assert latest_checkpoint(run, log=said.append) == run / "checkpoints" / "step_00000012"
    assert len(said) == 1 and str(newest) in said[0] and reason in said[0], said


def test_keep_last_k_removes_older_and_broken_folders(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4):
        (root / f"step_{step:08d}").mkdir(parents=True)
        if step != 2:
            (root / f"step_{step:08d}" / "manifest.json").write_text("{}")
    _prune(root, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000003", "step_00000004"]
