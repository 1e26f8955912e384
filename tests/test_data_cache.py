"""Hidden-state cache: offline training sees the same losses as online (eagle and eagle3), a killed job resumes
keeping whole shards, a full disk is refused before work, a bad data set writes nothing."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from data.cache import CacheJob, estimate_bytes, run_cache
from data.cache_reader import CacheMismatch, HiddenStateCache
from data.fingerprint import target_fingerprints as data_target_fps
from data.packing import real_lengths
from data.paths import CONF_DIR, register_resolvers
from data.spec import split_spec
from data.validate import DataValidationError
from tests.conftest import TINY_LLAMA
from train.config import TrainConfig, to_typed
from train.draft_factory import build_draft
from train.loss_seam import LossSeam
from train.modeling.target import target_fingerprints as train_target_fps

register_resolvers()
SEQ = 32


def make_cfg(corpus: Path, out: Path, draft: str, **data: object) -> TrainConfig:
    overrides = [
        f"draft={draft}", f"target.name_or_path={TINY_LLAMA}", f"data.train_files=[{corpus}]",
        f"data.valid_files=[{corpus}]", f"data.seq_len={SEQ}", f"data.max_tokens={SEQ * 24}",
        f"data.valid_max_tokens={SEQ * 8}", "train.micro_batch_size=4", f"output_dir={out}", "logger=none",
        "deepspeed=none", *(f"data.{k}={v}" for k, v in data.items()),
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_typed(compose(config_name="train", overrides=overrides))


def cache_job(cfg: TrainConfig, out: Path, layers: list[int]) -> CacheJob:
    splits = {s: split_spec(cfg.data, s) for s in ("train", "valid")}
    return CacheJob(str(TINY_LLAMA), str(out), splits, layers, batch_size=8, shard_blocks=8, progress=False)


@pytest.fixture(scope="module")
def cache(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "c"
    cfg = make_cfg(small_corpus, out.parent / "run", "eagle")
    run_cache(cache_job(cfg, out, [1, 2, 3, -1]))  # eagle3's low/mid/high fused layers plus the final norm
    return out


@pytest.mark.parametrize("draft", ["eagle", "eagle3"])
def test_offline_losses_equal_online(draft: str, cache: Path, small_corpus: Path, tmp_path: Path) -> None:
    cfg = make_cfg(small_corpus, tmp_path / "run", draft)
    off_cfg = make_cfg(small_corpus, tmp_path / "run", draft, mode="offline", cache_dir=cache)
    target = cfg.target.load("cpu")
    torch.manual_seed(0)
    draft_on = build_draft(cfg, target)
    draft_off = copy.deepcopy(draft_on)
    online, offline = LossSeam(cfg, target, 0, 1), LossSeam(off_cfg, target, 0, 1)
    assert offline.data.num_train() == online.data.num_train() == 24
    curves = []
    for stage, model in ((online, draft_on), (offline, draft_off)):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for i in range(4):  # a short training curve: same batches, same updates
            out = stage.forward_loss(model, stage.train_batch(i))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(out.loss.item())
        with torch.no_grad():
            losses += [
                stage.forward_loss(model, b, training=False).loss.item() for b in stage.valid_batches(2)
            ]
        curves.append(losses)
    assert len(curves[0]) == 6
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-5, atol=1e-6)


def test_manifest_fingerprints_match_training(cache: Path, small_corpus: Path, tmp_path: Path) -> None:
    m = json.loads((cache / "manifest.json").read_text())
    target = make_cfg(small_corpus, tmp_path, "eagle").target.load("cpu")
    assert data_target_fps is train_target_fps  # one fingerprint function for caches and training
    fp = target.fingerprint()
    assert (m["target_fingerprint"], m["tokenizer_fingerprint"]) == (
        fp["target_fingerprint"],
        fp["tokenizer_fingerprint"],
    )
    assert m["layers"] == [1, 2, 3, 4] and m["bytes_per_token"] == 4 * 256 * 4 + 5
    assert len(m["splits"]["train"]["shards"]) == 3  # 24 sequences, 8 per shard
    HiddenStateCache(cache, verify_hashes=True)
    with pytest.raises(CacheMismatch, match="train data differs"):
        HiddenStateCache(cache).check(fp, {"train": {"seq_len": 99}}, [4])


def test_killed_job_resumes_keeping_whole_shards(cache: Path, small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    cfg = make_cfg(small_corpus, tmp_path / "run", "eagle")
    ref = run_cache(cache_job(cfg, out, [-1]))
    train = out / "train"
    kept = train / "shard_00000.safetensors"
    kept_mtime = kept.stat().st_mtime_ns
    (out / "manifest.json").unlink()  # as if killed: no manifest, one shard missing, one torn mid-write
    (train / "shard_00002.safetensors").unlink()
    torn = train / "shard_00001.safetensors"
    torn.write_bytes(torn.read_bytes()[:1000])
    with pytest.raises(FileNotFoundError, match="did not finish"):
        HiddenStateCache(out)
    again = run_cache(cache_job(cfg, out, [-1]))
    assert kept.stat().st_mtime_ns == kept_mtime
    assert [s["sha256"] for s in again["splits"]["train"]["shards"]] == [
        s["sha256"] for s in ref["splits"]["train"]["shards"]
    ]
    with pytest.raises(FileExistsError, match="other settings"):
        run_cache(cache_job(cfg, out, [-1, 2]))


def test_full_disk_is_refused_and_bad_data_writes_nothing(
    small_corpus: Path, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_cfg(small_corpus, tmp_path / "run", "eagle")
    free = estimate_bytes(SEQ * 32, 256, 1, "float32") // 2

    monkeypatch.setattr(
        "data.cache.shutil.disk_usage", lambda p: shutil._ntuple_diskusage(free * 4, free * 3, free)
    )
    with pytest.raises(OSError, match="refusing to start"):
        run_cache(cache_job(cfg, tmp_path / "full", [-1]))
    assert not list((tmp_path / "full").rglob("*.safetensors"))
    monkeypatch.undo()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    bad_cfg = make_cfg(bad, tmp_path / "run", "eagle", max_tokens="null", valid_max_tokens="null")
    with pytest.raises(DataValidationError, match=r"bad.jsonl:2: field 'text' is int"):
        run_cache(cache_job(bad_cfg, tmp_path / "never", [-1]))
    assert not (tmp_path / "never").exists()


def chat_cfg(chats: Path, out: Path, draft: str, **data: object) -> TrainConfig:
    """The first shipped dialogues, one padded 128-token row each (most of every row is padding)."""
    overrides = [
        f"draft={draft}", f"target.name_or_path={TINY_LLAMA}", "data=embedded-dialogues",
        f"data.train_files=[{chats}]", f"data.valid_files=[{chats}]", "data.seq_len=128",
        "train.micro_batch_size=4", f"output_dir={out}", "logger=none", "deepspeed=none",
        *(f"data.{k}={v}" for k, v in data.items()),
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_typed(compose(config_name="train", overrides=overrides))


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    src = Path(CONF_DIR).parent / "data" / "embedded" / "corpus" / "dialogues_train.jsonl.gz"
    with gzip.open(src, "rt") as f:
        out.write_text("".join(line for _, line in zip(range(16), f, strict=False)))
    return out


def test_padded_chats_store_only_real_tokens_and_train_the_same(chats: Path, tmp_path: Path) -> None:
    """Chat rows are mostly padding: the cache stores only each record's real tokens, reads every record back
    exactly (the target's own states, bf16 on request), and offline training on them matches online."""
    cfg = chat_cfg(chats, tmp_path / "run", "eagle3")
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    m = run_cache(cache_job(cfg, fp32, [1, 2, 3, -1]))
    job = cache_job(cfg, bf16, [1, 2, 3, -1])
    job.dtype, job.shard_tokens = "bfloat16", 300  # shards close on tokens too
    mb = run_cache(job)
    blocks = HiddenStateCache(fp32).split("train")
    masks = blocks.loss_masks()
    real = int(torch.from_numpy(real_lengths(masks)).sum())
    assert 0 < real < 0.6 * masks.numel()  # the rows really are padded
    assert m["tokens"]["train"] == real == mb["tokens"]["train"]
    state = sum(s["bytes"] for s in m["splits"]["train"]["shards"])
    assert real * m["bytes_per_token"] <= state < real * m["bytes_per_token"] + 8 * 1024  # + headers, index
    assert len(mb["splits"]["train"]["shards"]) > len(m["splits"]["train"]["shards"])
    # Each record reads back as the target's own final-norm states on its real tokens, zeros past them.
    target = cfg.target.load("cpu")
    ids = blocks.get(range(len(blocks)), ["input_ids"])["input_ids"]
    lengths = real_lengths(masks)
    for name in ("fp32", "bf16"):
        split = HiddenStateCache(tmp_path / name).split("train")
        for r in (0, 5, len(split) - 1):
            n = int(lengths[r])
            with torch.no_grad():
                want = target.model(input_ids=ids[r : r + 1, :n].long(), output_hidden_states=True)
            got = split.get([r], ["layer_4", "layer_2"])
            tol = {"rtol": 1e-2, "atol": 1e-2} if name == "bf16" else {"rtol": 1e-5, "atol": 1e-5}
            torch.testing.assert_close(got["layer_4"][0, :n].float(), want.hidden_states[4][0], **tol)
            torch.testing.assert_close(got["layer_2"][0, :n].float(), want.hidden_states[2][0], **tol)
            assert not got["layer_4"][0, n:].any()
    off_cfg = chat_cfg(chats, tmp_path / "run", "eagle3", mode="offline", cache_dir=fp32)
    torch.manual_seed(0)
    draft_on = build_draft(cfg, target)
    draft_off = copy.deepcopy(draft_on)
    online, offline = LossSeam(cfg, target, 0, 1), LossSeam(off_cfg, target, 0, 1)
    curves = []
    for stage, model in ((online, draft_on), (offline, draft_off)):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for i in range(3):
            out = stage.forward_loss(model, stage.train_batch(i))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(out.loss.item())
        curves.append(losses)
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-5, atol=1e-6)


def test_old_padded_cache_is_refused(cache: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(cache, old)
    m = json.loads((old / "manifest.json").read_text())
    del m["format"]
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheMismatch, match="padded layout"):
        HiddenStateCache(old)
