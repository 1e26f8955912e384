"""Chat batching: length-grouped order, trimming that changes no loss, and tokens counted without padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from data.packing import BlockSampler, real_lengths
from data.paths import CONF_DIR, register_resolvers
from tests.conftest import TINY_LLAMA
from tests.drafts import ALGORITHMS, quick
from train.config import to_typed
from train.draft_factory import build_draft
from train.loss_seam import LossSeam
from train.modeling.target import FrozenTarget

register_resolvers()


def test_real_lengths_end_at_the_last_trained_position() -> None:
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert real_lengths(mask).tolist() == [4, 3, 0, 4]


@pytest.mark.parametrize("grouped", [False, True])
def test_each_epoch_reads_every_block_at_most_once_and_is_a_pure_function(grouped: bool) -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 500, size=203)
    world, mbs = 2, 4
    samplers = [BlockSampler(203, mbs, r, world, 7, lengths, grouped) for r in range(world)]
    per_epoch = samplers[0].per_epoch
    for epoch in range(2):
        seen = np.concatenate(
            [s.indices(i) for i in range(epoch * per_epoch, (epoch + 1) * per_epoch) for s in samplers]
        )
        assert len(seen) == len(set(seen.tolist())) == per_epoch * world * mbs
    fresh = BlockSampler(203, mbs, 1, world, 7, lengths, grouped)  # a resumed run seeks straight to i
    for i in (per_epoch + 3, 2, per_epoch * 3 + 1):
        assert fresh.indices(i).tolist() == samplers[1].indices(i).tolist()
        assert fresh.tokens(i) == int(lengths[np.concatenate([s.indices(i) for s in samplers])].sum())


@pytest.mark.parametrize("grouped", [False, True])
def test_a_step_reads_the_same_blocks_however_the_global_batch_is_factored(grouped: bool) -> None:
    """16 blocks per step as 8 x accum 1 x 2 ranks, 8 x 2 x 1, 4 x 4 x 1 or 2 x 1 x 8: the same blocks in
    every step, across epochs (what an elastic resume relies on: train/resume.py)."""
    lengths = np.random.default_rng(2).integers(5, 500, size=203)

    def steps(micro: int, accum: int, world: int) -> list[list[int]]:
        samplers = [BlockSampler(203, micro, r, world, 7, lengths, grouped, accum) for r in range(world)]
        n = samplers[0].per_epoch * 3 // accum  # three epochs of steps
        return [
            sorted(
                int(b) for i in range(s * accum, (s + 1) * accum) for sm in samplers for b in sm.indices(i)
            )
            for s in range(n)
        ]

    planned = steps(8, 1, 2)
    assert len(planned) == 3 * (203 // 16)
    for factors in ((8, 2, 1), (4, 4, 1), (2, 1, 8), (4, 2, 2)):
        assert steps(*factors) == planned, factors


def test_grouping_by_length_cuts_the_padding_computed() -> None:
    lengths = np.random.default_rng(0).lognormal(3.7, 0.8, size=960).astype(int).clip(4, 512)

    def padded_share(grouped: bool) -> float:
        s = BlockSampler(960, 8, 0, 1, 0, lengths, grouped)
        computed = sum(8 * int(lengths[s.indices(i)].max()) for i in range(s.per_epoch))
        return 1 - lengths.sum() / computed

    assert padded_share(True) < 0.2 < 0.4 < padded_share(False)


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


@pytest.mark.parametrize("draft", ALGORITHMS)  # every registered algorithm
def test_trimming_a_chat_batch_changes_no_loss(draft: str, target: FrozenTarget, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(
            compose(
                "train",
                overrides=[
                    f"output_dir={tmp_path}", "logger=none", f"draft={draft}", "data=embedded-dialogues",
                    "stage=sft", "train.micro_batch_size=4", *quick(draft),
                ],
            )
        )  # fmt: skip
    torch.manual_seed(0)
    head = build_draft(cfg, target).eval()
    stage = LossSeam(cfg, target, rank=0, world=1)
    for i in range(3):
        trimmed = stage.train_batch(i)
        full = stage.data.get("train", torch.from_numpy(stage.sampler.indices(i)))
        assert trimmed["input_ids"].shape[1] < full["input_ids"].shape[1] == cfg.data.seq_len
        assert int(trimmed["loss_mask"].sum()) == int(full["loss_mask"].sum())  # no trained token is cut
        with torch.no_grad():
            a = stage.forward_loss(head, full, training=False).stats
            b = stage.forward_loss(head, trimmed, training=False).stats
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4, msg=k)
    assert stage.step_tokens(range(3)) == int(
        sum(stage.lengths[stage.sampler.indices(i)].sum() for i in range(3))
    )
