"""The DFlash axes of a sweep: the block axis is a law of its own (x = the recorded block size), fitted and
plotted like the others, kept out of the capacity law; a block drafter's sweep (chains only) is fitted on the
chain's tau, and fitting it on a shape it never decoded stops with one line and exit 2. Synthetic records
with a known answer, shaped as eval.laws.point writes them."""

from __future__ import annotations

import numpy as np
import pytest

from eval.laws.__main__ import main as laws_main
from eval.laws.analyze import fit_laws, summary_lines, write_plots
from eval.laws.records import append_record, read_table

P_OF_DEPTH = {1: 3.1e6, 2: 5.2e6, 4: 9.4e6, 8: 17.8e6}  # a DFlash head: fc + N decoder layers
BLOCK_SLOPE, CAPACITY_SLOPE = 0.3, 0.05  # the known answer


def _record(axis: str, depth: int, block: int, tau: float) -> dict:
    chain = {"tau": tau, "tau_ci95": [tau - 0.05, tau + 0.05], "acceptance_at_1": 0.3, "speedup": 0.5,
             "draft_ms": 2.0 + 0.1 * block, "verify_ms": 5.0}  # fmt: skip
    key = f"d{depth}-k{block}"
    return {
        "point_id": f"{axis}-{key}", "sweep": "dfl", "axis": axis, "target": "tiny-llama", "draft": "dflash",
        "depth": depth, "block_size": block, "batch_size": 1, "train_key": key, "config_fingerprint": key,
        "target_tokens": 100_000, "tokens_seen": 100_000, "trainable_params": P_OF_DEPTH[depth],
        "target_params": 4.2e6, "ttt_steps": 1, "train_flops": 1.0, "train_seconds": 1.0, "eval_seconds": 1.0,
        "results": {"t0/chain": chain, "t1/chain": {**chain, "tau": tau - 0.1}},
    }  # fmt: skip


@pytest.fixture
def dflash_sweep(tmp_path):
    """Depth 1, 2, 4, 8 at block 8 and block 4, 8, 16 at depth 2, as the two tiny-dflash grids write them."""
    rng = np.random.default_rng(0)
    root = tmp_path / "dfl"
    for d in P_OF_DEPTH:
        tau = 1.6 + CAPACITY_SLOPE * np.log(P_OF_DEPTH[d] / 1e6) + rng.normal(0, 0.002)
        append_record(root, _record("depth", d, 8, tau))
    for b in (4, 8, 16):
        append_record(root, _record("block", 2, b, 1.0 + BLOCK_SLOPE * np.log(b) + rng.normal(0, 0.002)))
    return root


def test_block_axis_is_its_own_law(dflash_sweep) -> None:
    laws = fit_laws(read_table(dflash_sweep), "t0/chain/tau", n_boot=20)
    out = "\n".join(summary_lines(laws))
    assert "block law (t0/chain/tau vs block_size)" in out and "capacity law (t0/chain/tau" in out
    block = laws["laws"]["block"]
    assert (block["axis"], block["x"]) == ("block", "block_size")
    line = block["forms"]["log_linear"]
    assert line["x"] == [4.0, 8.0, 16.0]
    assert line["params"]["b"] == pytest.approx(BLOCK_SLOPE, abs=0.02)
    lo, hi = line["t_ci95"]["b"]
    assert lo < line["params"]["b"] < hi
    # The capacity law sees the depth axis only: four depths, not the block axis' depth-2 points.
    capacity = laws["laws"]["capacity"]["forms"]["log_linear"]
    assert capacity["x"] == sorted(P_OF_DEPTH.values())
    assert capacity["params"]["b"] == pytest.approx(CAPACITY_SLOPE, abs=0.01)
    # Draft cost per step beside tau, per block size, from the fitted shape (chains).
    assert [(r["block_size"], r["draft_ms"]) for r in laws["block_costs"]] == [(4, 2.4), (8, 2.8), (16, 3.6)]
    assert "block 16 (depth 2): tau " in out and "draft 3.6 ms / verify 5 ms per step" in out
    assert out.index("block law") < out.index("block 4 (depth 2)")
    assert laws["draft_ms_by_depth"] == {str(d): 2.8 for d in P_OF_DEPTH}
    assert "depth 1: 3,100,000 trainable parameters, draft 2.8 ms per step" in out
    assert out.index("capacity law") < out.index("depth 1: 3,100,000") < out.index("block law")


def test_block_law_is_plotted_against_block_size(dflash_sweep) -> None:
    laws = fit_laws(read_table(dflash_sweep), "t0/chain/tau", n_boot=20)
    laws["_fits"] = {"block": laws["_fits"]["block"]}  # one plot: matplotlib is the slow part here
    paths = write_plots(laws, dflash_sweep)
    assert paths == {"block": dflash_sweep / "law_block.png"} and paths["block"].stat().st_size > 0


def test_a_metric_the_sweep_never_decoded_exits_2(dflash_sweep, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        laws_main([str(dflash_sweep), "--no-wandb"])  # the default metric is the tree's tau
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--metric t0/tree/tau" in err and "--metric t0/chain/tau" in err


def test_dflash_scaling_commands_run_as_printed() -> None:
    """docs/dflash.md's Scaling lines (and docs/scaling-laws.md's copy) name the two grids and a fit whose
    arguments parse (running them takes the sweep's ~18 minutes; the grids compose in test_sweep_configs)."""
    import shlex

    from data.paths import CONF_DIR
    from eval.laws.__main__ import build_parser
    from tests.readme_blocks import DOCS, section_commands

    commands = [c.split(" #", 1)[0].strip() for c in section_commands("## Scaling", DOCS / "dflash.md")]
    listed = section_commands("The axes: **tokens**", DOCS / "scaling-laws.md")
    assert [c.split(" #", 1)[0].strip() for c in listed] == commands  # the two pages print the same lines
    sweep = "nice -n 10 python -m eval.laws.point -m --config-name sweep/"
    grids = [c.removeprefix(sweep) for c in commands if c.startswith(sweep)]
    assert grids == ["tiny-dflash-depth", "tiny-dflash-block"]
    assert all((CONF_DIR / "sweep" / f"{g}.yaml").is_file() for g in grids)  # composed: test_sweep_configs
    fits = [c.removeprefix("python -m eval.laws ") for c in commands if c.startswith("python -m eval.laws ")]
    assert len(fits) == 1
    args = build_parser().parse_args(shlex.split(fits[0]))
    assert (str(args.sweep_dir), args.metric) == ("outputs/sweeps/tiny-dflash", "t0/chain/tau")
