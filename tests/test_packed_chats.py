"""Packed chats (data.pack_chats): no conversation in a row sees another's tokens or features, and a packed
conversation's losses are those it has alone in a row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from data.packing import pack_chats, plan_rows, real_lengths
from data.paths import CONF_DIR, register_resolvers
from tests.conftest import TINY_LLAMA
from tests.drafts import ALGORITHMS, layers, quick
from train.config import to_typed
from train.draft_factory import build_draft
from train.feature_source import target_features
from train.loss_seam import LossSeam, objective_for
from train.modeling.doc_mask import Packing, doc_causal_mask, doc_positions, varlen_of
from train.modeling.target import FrozenTarget, TargetFeatures

register_resolvers()


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


def config(tmp_path: Path, *overrides: str):  # noqa: ANN201
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"output_dir={tmp_path}", "logger=none", "stage=sft", *overrides])
    return to_typed(cfg)


def test_positions_masks_and_segments_follow_the_conversations() -> None:
    docs = torch.tensor([[0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 1, 1]])
    assert doc_positions(docs).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]
    m = doc_causal_mask(docs)[0, 0]
    for q in range(6):
        assert m[q].tolist() == [k <= q and bool(docs[0, k] == docs[0, q]) for k in range(6)]
    v = varlen_of(docs)
    assert v.cu_seqlens.tolist() == [0, 3, 5, 6, 10, 12] and v.max_seqlen == 4


def test_row_plan_is_first_fit_pure_and_fills_rows() -> None:
    lengths = np.random.default_rng(0).lognormal(3.7, 0.8, size=960).astype(int).clip(0, 512)
    plan = plan_rows(lengths, 512)
    assert plan == plan_rows(lengths.copy(), 512)  # a pure function of the lengths: resume stays a seek
    flat = sorted(i for row in plan for i in row)
    assert flat == [i for i in range(960) if lengths[i] > 0]  # every conversation once, empty ones dropped
    used = np.array([lengths[row].sum() for row in plan])
    assert used.max() <= 512
    assert 1 - used.sum() / (512 * len(plan)) < 0.02
    with pytest.raises(ValueError, match="more than a row"):
        plan_rows(np.array([3, 600]), 512)


def conversations(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Five chats as one-per-row padded blocks (seq 24): a prompt (mask 0) then a reply (mask 1); rows of 24
    hold them as [13, 11], [10, 9], [8] (first-fit, longest first)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [11, 9, 13, 8, 10]
    ids = torch.zeros(len(lengths), 24, dtype=torch.int32)
    mask = torch.zeros(len(lengths), 24, dtype=torch.uint8)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, 4000, (n,), generator=g)
        mask[i, (0 if i % 2 else 3) : n] = 1  # odd ones train from their first token: boundary losses show
    return ids, mask


def stats_per_token(objective, head, target, ids, feats, mask, packing) -> dict[int, dict]:  # noqa: ANN001
    """Each trained position's own loss statistics: the objective run with only that position masked in."""
    out = {}
    for p in torch.nonzero(mask.reshape(-1)).flatten().tolist():
        one = torch.zeros(mask.numel(), dtype=mask.dtype)
        one[p] = 1
        with torch.no_grad():
            out[p] = objective(head, target, ids, feats, one.view_as(mask), False, packing).stats
    return out


def assert_same_stats(a: dict, b: dict, msg: str) -> None:
    assert a.keys() == b.keys(), msg
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{msg}: {k}")


def features_at(f: TargetFeatures, keep: torch.Tensor) -> list[torch.Tensor]:
    return [x[keep] for x in (f.hidden, f.logits, f.layers) if x is not None]


def draft_and_objective(
    draft: str, target: FrozenTarget, tmp_path: Path
) -> tuple[torch.nn.Module, Any, tuple[int, ...]]:
    """The same seeded draft head, its objective and the target layers it fuses, for both packed-chat tests."""
    cfg = config(tmp_path, f"draft={draft}", *quick(draft))
    torch.manual_seed(0)
    return build_draft(cfg, target).eval(), objective_for(cfg), layers(cfg, target.num_layers)


@pytest.mark.parametrize("draft", ALGORITHMS)
def test_a_conversation_changes_nothing_for_the_others(
    draft: str, target: FrozenTarget, tmp_path: Path
) -> None:
    head, objective, fused = draft_and_objective(draft, target, tmp_path)
    ids, mask, docs = pack_chats(*conversations(), pad_id=0)
    assert ids.shape[0] >= 2 and int(docs.max()) >= 2  # several rows, several chats in a row
    ids = ids.long()
    packing = Packing.of(docs.long(), target.model.config._attn_implementation)
    changed = (0, 0)  # the first conversation of the first row: the next one would see it, were it not masked
    perturbed = ids.clone()
    where = torch.zeros_like(ids, dtype=torch.bool)
    where[changed[0]] = docs[changed[0]] == changed[1]
    perturbed[where] = torch.randint(3, 4000, (int(where.sum()),))
    with torch.no_grad():
        fa, fb = (
            target_features(target, ids, packing, fused),
            target_features(target, perturbed, packing, fused),
        )
    for x, y in zip(features_at(fa, ~where), features_at(fb, ~where), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    assert not torch.allclose(fa.hidden[where], fb.hidden[where])
    a = stats_per_token(objective, head, target, ids, fa, mask, packing)
    b = stats_per_token(objective, head, target, perturbed, fb, mask, packing)
    moved = 0
    for p in a:
        row, col = divmod(p, ids.shape[1])
        if where[row, col]:
            moved += not torch.allclose(a[p]["loss_sum"], b[p]["loss_sum"])
        else:
            assert_same_stats(a[p], b[p], f"{draft} position {p}")
    assert moved > 0, "perturbing a conversation changed none of its own losses: the test is blind"


@pytest.mark.parametrize("draft", ALGORITHMS)
def test_packed_losses_equal_each_conversation_alone(
    draft: str, target: FrozenTarget, tmp_path: Path
) -> None:
    head, objective, fused = draft_and_objective(draft, target, tmp_path)
    alone_ids, alone_mask = conversations()
    ids, mask, docs = pack_chats(alone_ids, alone_mask, pad_id=0)
    ids = ids.long()
    plan = plan_rows(real_lengths(alone_mask), ids.shape[1])
    packing = Packing.of(docs.long(), target.model.config._attn_implementation)
    with torch.no_grad():
        feats = target_features(target, ids, packing, fused)
        for row in range(ids.shape[0]):
            for d in range(int(docs[row].max())):  # the last id is the row's padding
                span = torch.nonzero(docs[row] == d).flatten()
                chat = ids[row, span][None]
                src = plan[row][d]
                assert torch.equal(alone_ids[src, : span.numel()].long(), chat[0])
                only = torch.zeros_like(mask)
                only[row, span] = mask[row, span]
                packed = objective(head, target, ids, feats, only, False, packing).stats
                alone_m = alone_mask[src, : span.numel()][None]
                alone_f = target_features(target, chat, layers=fused)
                layers = None if feats.layers is None else feats.layers[row, span]
                packed_f = TargetFeatures(feats.hidden[row, span], feats.logits[row, span], layers)
                for x, y in zip(features_at(packed_f, slice(None)), features_at(alone_f, 0), strict=True):
                    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
                alone = objective(head, target, chat, alone_f, alone_m, False).stats
                assert_same_stats(packed, alone, f"{draft} conversation {src}")


def test_pack_chats_in_the_run_keeps_every_trained_token(target: FrozenTarget, tmp_path: Path) -> None:
    base = [
        "data=embedded-dialogues",
        "train.micro_batch_size=4",
        "draft=eagle3",
        "draft.draft_vocab_size=null",
    ]
    plain = LossSeam(config(tmp_path, *base), target, rank=0, world=1)
    packed = LossSeam(config(tmp_path, *base, "data.pack_chats=true"), target, rank=0, world=1)
    assert packed.data.num_train() < plain.data.num_train() / 3
    a, b = plain.data.train, packed.data.train  # type: ignore[attr-defined]
    assert int(a.loss_mask.sum()) == int(b.loss_mask.sum())
    batch = packed.train_batch(0)
    assert "doc_ids" in batch
    with torch.no_grad():
        out = packed.forward_loss(build_draft(packed.cfg, target).eval(), batch, training=False)
    assert torch.isfinite(out.loss) and out.stats["count"] > 0


def test_offline_mode_refuses_packed_chats(tmp_path: Path) -> None:
    from data.spec import DataConfig
    from train.feature_source import OfflineSource

    with pytest.raises(ValueError, match="pack_chats=true is online-only"):
        OfflineSource(DataConfig(mode="offline", cache_dir=str(tmp_path), pack_chats=True))
