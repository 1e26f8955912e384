"""Every sweep grid composes into valid point configs; the tiny axes have the shape the issue asks for; the
cluster cost calculator counts shared trainings once and follows 6ND."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, REPO_ROOT, register_resolvers
from eval.laws.cost import ARCHS, draft_params, grid_of, grid_points, sweep_cost
from eval.laws.point import eval_config

register_resolvers()
GRIDS = sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml") if p.stem != "point")


@pytest.fixture(autouse=True)
def _hydra():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


@pytest.mark.parametrize("grid", GRIDS)
def test_grid_composes(grid: str) -> None:
    points = grid_points(grid, [])
    assert len(points) >= 3  # a law needs 3 points (the DFlash block axis has exactly 3: 4, 8, 16)
    assert len({p.point_id for p in points}) == len(points)


def test_tiny_axes() -> None:
    tokens = sorted(p.tokens for p in grid_points("tiny-tokens", []))
    assert len(tokens) >= 6
    assert np.allclose(np.diff(np.log(tokens)), math.log(2))  # log-spaced
    assert sorted(p.depth for p in grid_points("tiny-depth", [])) == [1, 2, 4, 8]
    assert sorted(p.eval.batch_size for p in grid_points("tiny-batch", [])) == [1, 2, 4, 8, 16, 32, 64]
    # The depth-2 point of the depth axis is the tokens axis' point at the same budget: one training.
    shared = {p.train_key for p in grid_points("tiny-tokens", [])} & {
        p.train_key for p in grid_points("tiny-depth", [])
    }
    assert len(shared) == 1


def test_tiny_scale_axes() -> None:
    """The larger tiny grid (issue 24 items 3, 4): six budgets 50k..1.6M 2x apart at depth 2 (the warm-up rule
    needs six), depth 1/2/4/8 at the largest, one results folder, both axes decoded on 64 prompts x 64 tokens, and
    its 50k..400k trainings the tiny sweep's own (same keys: a tiny sweep already run is not retrained)."""
    tokens, depth = grid_points("tiny-scale-tokens", []), grid_points("tiny-scale-depth", [])
    assert sorted(p.tokens for p in tokens) == [50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000]
    assert {p.depth for p in tokens} == {2}
    assert sorted((p.tokens, p.depth) for p in depth) == [(1_600_000, d) for d in (1, 2, 4, 8)]
    shared = {p.train_key for p in tokens} & {p.train_key for p in depth}
    assert shared == {next(p.train_key for p in tokens if p.tokens == 1_600_000)}
    for p in (*tokens, *depth):
        assert p.output_root == "outputs/sweeps/tiny-scale"
        assert {"prompts.num_prompts=64", "max_new_tokens=64"} <= set(p.eval.overrides)
    tiny = {p.train_key for p in grid_points("tiny-tokens", [])}
    assert tiny & {p.train_key for p in tokens} == {p.train_key for p in tokens if p.tokens <= 400_000}


def test_a_comma_list_on_the_command_line_sweeps_that_key() -> None:
    """grid_points reads extra overrides as a multirun's command line does: `tokens=a,b` replaces the grid's
    budgets; a bracketed list is one value of a list key."""
    points = grid_points("tiny-scale-tokens", ["tokens=200000,1600000", "draft_name=eagle", "depth=1"])
    assert sorted((p.tokens, p.draft_name, p.depth) for p in points) == [
        (200_000, "eagle", 1),
        (1_600_000, "eagle", 1),
    ]
    one = grid_points("tiny-depth", ['train=["stage=pretrain","data=embedded-pydocs"]'])
    assert len(one) == 4 and all(p.train == ["stage=pretrain", "data=embedded-pydocs"] for p in one)


def test_tiny_dflash_axes() -> None:
    """Depth 1..8 at DFlash's default block and blocks 4, 8, 16 at depth 2, in their own results folder: the
    block is a tracked axis (train override, train key, draft_length = block - 1 in each chain eval) and the
    two grids share exactly one training (depth 2, the default block)."""
    from eval.laws.config import to_point_config
    from eval.laws.point import eval_runs, point_identity
    from train.drafts.dflash.config import DFlashConfig

    depth, block = grid_points("tiny-dflash-depth", []), grid_points("tiny-dflash-block", [])
    default = DFlashConfig().block_size
    assert sorted((p.axis, p.depth, p.block) for p in depth) == [("depth", d, default) for d in (1, 2, 4, 8)]
    assert sorted((p.axis, p.depth, p.block) for p in block) == [("block", 2, b) for b in (4, 8, 16)]
    shared = {p.train_key for p in depth} & {p.train_key for p in block}
    assert shared == {next(p.train_key for p in depth if p.depth == 2)}
    for p in block:
        assert f"draft.block_size={p.block}" in p.train_overrides() and f"-k{p.block}-" in p.train_key
        assert p.output_root == "outputs/sweeps/tiny-dflash" and p.draft_name == "dflash"
        runs = eval_runs(p)
        assert set(runs) == {"t0/chain"}
        assert all(f"draft_length={p.block - 1}" in o for o in runs.values())
        assert "prompts.num_prompts=32" in p.eval.overrides
        assert point_identity(p)["block_size"] == p.block  # every record names its block
    # A draft without a block records none (its keys are unchanged); the block axis on it is refused.
    scylla = to_point_config(compose("sweep/tiny-depth", overrides=["depth=2"]))
    assert scylla.block is None and scylla.train_key == "scylla-d2-t100000-24f9d9cc"  # the key before blocks
    assert point_identity(scylla)["block_size"] is None
    with pytest.raises(ValueError, match="draft 'scylla' has no draft.block_size"):
        to_point_config(compose("sweep/tiny-dflash-block", overrides=["draft_name=scylla", "block=4"]))


def test_cluster_cost_counts_shared_trainings_once() -> None:
    lines = sweep_cost("llama3.1-8b", 0.4, 989.0, 25.0)
    assert lines[-1].strip().startswith("total") and "10 trainings" not in lines[-1]
    # 6 budgets + depth {1,2,8} at 2B + depth {1,2,8} at 16B (depth 4 is shared with the tokens axis) = 12
    assert "12 trainings" in lines[-1]
    arch = ARCHS["llama-3.1-8b-instruct"]
    assert draft_params(arch, 2, 32000) - draft_params(arch, 1, 32000) == pytest.approx(
        4 * arch.hidden**2 // 2
        + 2 * arch.hidden * arch.kv_heads * arch.head_dim
        + 3 * arch.hidden * arch.intermediate
        + 2 * arch.hidden,
        rel=0.01,
    )  # one more decoder layer: q/o (h x h), k/v (h x kv_dim), the MLP, two norms


def test_one_override_retargets_every_point(tmp_path: Path) -> None:
    """`launch/sweep_tiny.sh target.name_or_path=<folder>` or a cluster grid with `target=<option>`: training
    and eval of every point run on that target, and the points are new ones (their keys name the target)."""
    default = grid_points("tiny-tokens", [])
    moved = grid_points("tiny-tokens", ["target.name_or_path=/models/x"])
    for before, after in zip(default, moved, strict=True):
        assert "target.name_or_path=/models/x" in after.train_overrides()
        assert not any(o.startswith("target=") for o in after.train_overrides())
        assert (
            eval_config(after, [], tmp_path / "export", tmp_path / "out").target.name_or_path == "/models/x"
        )
        assert after.train_key != before.train_key and after.point_id != before.point_id
    # The shipped tiny target's key leaves out where the clone lives, so a copied clone resumes its sweep:
    # the same point spelled with the target's repo-relative folder has the same keys.
    first = default[0]
    assert first.target.name_or_path.startswith(f"{REPO_ROOT}/")
    rel = dataclasses.replace(first.target, name_or_path=first.target.name_or_path[len(f"{REPO_ROOT}/") :])
    relative = dataclasses.replace(first, target=rel)
    assert (relative.train_key, relative.point_id) == (first.train_key, first.point_id)
    qwen = grid_points("llama3.1-8b-tokens", ["target=qwen2.5-7b-instruct"])
    assert {p.target.name_or_path for p in qwen} == {"Qwen/Qwen2.5-7B-Instruct"}
    assert {p.target.name_or_path for p in grid_points("llama3.1-8b-depth", [])} == {
        "meta-llama/Llama-3.1-8B-Instruct"
    }
    local = grid_points("llama3.1-8b-tokens", ["target.name_or_path=/models/Llama-3.1-8B-Instruct"])
    assert {p.target.dtype for p in local} == {"bfloat16"}  # the rest of the option's fields stay


def test_cluster_grid_position_for_carrying_laws() -> None:
    grid = grid_of("llama3.1-8b")
    assert (grid.max_tokens, grid.tokens_depth, grid.ttt_steps) == (16e9, 4, 7)
    assert sorted(grid.capacity) == [1, 2, 4, 8]
    sizes = [grid.capacity[d] for d in (1, 2, 4, 8)]
    assert sizes == sorted(sizes) and grid.target_params == ARCHS["llama-3.1-8b-instruct"].params
