"""Commands the README and docs/ print run as printed: the ones too large to run here are composed by Hydra.

The first "Your own target" line runs end to end in tests/test_own_target_recipe.py; the lines here need a
7B download (the Qwen retarget) or repeat that run with one more key (the tokenizer), so they are composed
with Hydra's `--cfg job` and the composed target is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from data.paths import REPO_ROOT
from tests.readme_blocks import DOCS, README, section_commands, shell_env

OWN_TARGET = "### Your own target, by one override"


def compose(command: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        ["bash", "-c", command + " --cfg job"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return yaml.safe_load(proc.stdout)


def test_own_target_commands_compose_to_the_target_they_name(tmp_path: Path) -> None:
    commands = section_commands(OWN_TARGET, DOCS / "recipes.md")
    assert len(commands) == 3, commands
    my_target = str(tmp_path / "my-target")
    env = shell_env(MY_TARGET=my_target)
    qwen = compose(commands[1], env)
    assert qwen["target"]["name_or_path"] == "Qwen/Qwen2.5-7B-Instruct"
    assert qwen["name"] == "scylla-llama3.1-8b"
    own_tokenizer = compose(commands[2], env)
    assert own_tokenizer["target"]["name_or_path"] == my_target
    assert own_tokenizer["target"]["tokenizer"] == f"{my_target}/tokenizer.json"


def test_ci_runs_the_readme_test_commands_exactly() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    readme = README.read_text()
    test_command = "pip install 'torch==2.13.0' -e '.[dev]' && python -m pytest -q"
    assert f"```bash\n{test_command}\n```" in readme
    vllm_line = next(
        line.strip("`. ") for line in readme.splitlines() if line.startswith("`DRAFTFORGE_VLLM_PYTHON=")
    )
    for line in (test_command, vllm_line):
        assert any(c.strip() == line for c in ci), f".ci/run does not run the README's `{line}` as printed"


def test_every_benchmark_line_starts_as_printed_without_pythonpath() -> None:
    """docs/benchmarks.md's lines, each with --help: the module resolves from the repository root with no
    PYTHONPATH (as a user types it) and its arguments parse. The runs themselves take minutes each."""
    commands = [c.split(" #", 1)[0] for c in section_commands("# Benchmarks", DOCS / "benchmarks.md")]
    listed = {c.split()[2] for c in commands}
    on_disk = {f"tests.bench.{p.stem}" for p in (REPO_ROOT / "tests" / "bench").glob("bench_*.py")}
    assert listed == on_disk, "every benchmark script is printed in docs/benchmarks.md, and only those"
    env = {k: v for k, v in shell_env().items() if k != "PYTHONPATH"}
    assert all(c.split()[:2] == ["python", "-m"] and len(c.split()) == 3 for c in commands), commands
    # One interpreter runs every line's module as `python -m` would (runpy, from the repository root, no
    # PYTHONPATH): fifteen separate torch imports cost two minutes of the suite's 2 cores.
    proc = subprocess.run(
        [sys.executable, "-c", HELP_EVERY_MODULE, *sorted(listed)], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(proc.stdout.split()) == sorted(f"ok:{m}" for m in listed), proc.stdout[-3000:]


# `python -m <module> --help` for each module named on the command line, in one process: prints ok:<module>
# when argparse exits 0 on --help, and exits 1 naming the first module that does not.
HELP_EVERY_MODULE = """
import contextlib, io, runpy, sys
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = "no SystemExit: --help ran the benchmark"
        except SystemExit as stop:
            code = stop.code
    if code not in (0, None):
        sys.exit(f"{module} --help exited {code}")
    print(f"ok:{module}")
"""


def test_parallel_drafters_page_prints_a_command_the_bench_parses() -> None:
    """docs/parallel-drafters.md's table was made by the command it prints: the bench's own parser takes it
    (no run: it trains four drafts) with the issue's >= 64 prompts."""
    from tests.bench.bench_parallel_drafters import parse_args

    (command,) = section_commands("## Run it", DOCS / "parallel-drafters.md")
    words = command.split()
    assert words[:3] == ["python", "-m", "tests.bench.bench_parallel_drafters"], command
    args = parse_args(words[3:])
    assert args.prompts >= 64 and set(args.drafts) == {"eagle3", "scylla", "peagle", "dflash"}, command


def test_speculators_side_by_side_prints_a_command_that_runs() -> None:
    """docs/benchmarks.md's full-size command for the comparison with speculators' trainer parses with the
    bench's own parser at the issue's size (every dialogue x 6 epochs = ~337k tokens, 2 reps), and runs as printed: without a speculators
    python it says why in one line and exits 0 (the run itself takes ~25 minutes on 2 cores)."""
    from tests.bench.bench_vs_speculators import parse_args

    (command,) = section_commands("## Side by side with speculators' trainer", DOCS / "benchmarks.md")
    words = command.split()
    assert words[:3] == ["python", "-m", "tests.bench.bench_vs_speculators"], command
    args = parse_args(words[3:])
    assert args.tokens is None and args.epochs >= 6 and args.reps >= 2 and not args.no_tau, command
    env = {k: v for k, v in shell_env().items() if k not in ("PYTHONPATH", "DRAFTFORGE_VLLM_PYTHON")}
    proc = subprocess.run(command.split(), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines() == [
        "[bench] skipped: no speculators trainer to compare with: DRAFTFORGE_VLLM_PYTHON is not set "
        "(docs/serving.md builds that environment)"
    ], proc.stdout + proc.stderr


def test_the_self_attend_study_prints_commands_that_make_its_table(tmp_path: Path) -> None:
    """docs/scaling-laws.md's 3-seed study: the bench line parses into 3 arms x seeds 0, 1, 2 (the start off, on,
    on with lr 4e-3), and the compare line's shell expansions pool each arm's three exports into one entry."""
    from tests.bench.bench_head_layouts import parse_args, select_rows

    bench, compare = section_commands("### The start, measured with 3 seeds", DOCS / "scaling-laws.md")
    words = bench.split()
    assert words[:3] == ["python", "-m", "tests.bench.bench_head_layouts"], bench
    args = parse_args(words[3:])
    rows = select_rows(args.variant, args.only)
    arms = {
        "def": ["draft.self_attend_init=false"],
        "sai": ["draft.self_attend_init=true"],
        "sailr": ["draft.self_attend_init=true", "optim.lr=4e-3"],
    }
    assert sorted(rows) == sorted(f"{arm}-s{s}" for arm in arms for s in range(3))
    for name, (_, extra) in rows.items():
        arm, seed = name.split("-s")
        assert extra == [*arms[arm], f"train.seed={seed}"], (name, extra)
    assert (args.tokens, args.depth, str(args.out)) == (200_000, 2, "outputs/study-sai")
    # The compare line as bash expands it, over the folders the bench line writes (python is a shell function
    # that prints its arguments: the expansion is under test here; eval.compare itself runs in tests/test_pipeline.py).
    for name in rows:
        (tmp_path / "outputs" / "study-sai" / name / "train" / "key" / "export").mkdir(parents=True)
    proc = subprocess.run(["bash", "-c", f"python() {{ printf '%s\\n' \"$@\"; }}; {compare}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pooled = dict(a.split("=", 1) for a in proc.stdout.split() if "=" in a and not a.startswith("-"))
    assert set(pooled) == {"default", "self_attend_init", "self_attend_init+lr4e-3"}, proc.stdout
    for entry, arm in zip(pooled, arms, strict=True):
        assert pooled[entry].split(",") == [
            f"outputs/study-sai/{arm}-s{s}/train/key/export" for s in range(3)
        ]


SCALE_STUDY = "### Scylla, EAGLE-3 and EAGLE-2 to 1.6M tokens; capacity at 1.6M"


def _points_of(command: str) -> list:
    """The points a printed `python -m eval.laws.point -m --config-name sweep/<grid> k=v ...` line runs."""
    from hydra import initialize_config_dir

    from data.paths import CONF_DIR, register_resolvers
    from eval.laws.cost import grid_points

    words = command.split()
    assert words[:5] == ["python", "-m", "eval.laws.point", "-m", "--config-name"], command
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return grid_points(words[5].removeprefix("sweep/"), words[6:])


def test_the_scale_study_prints_commands_that_make_its_tables(tmp_path: Path) -> None:
    """docs/scaling-laws.md's study past the tiny sweep: the first line runs launch/sweep_tiny.sh on the
    tiny-scale grids (checked with `python` replaced by a recorder: the runs take ~2 hours), the next two train
    EAGLE-3 and EAGLE-2 at three of Scylla's budgets on the same eval (64 prompts x 64 tokens), each into its own
    results folder, and the last fits the Scylla sweep."""
    sweep, eagle3, eagle2, fit = section_commands(SCALE_STUDY, DOCS / "scaling-laws.md")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    (bindir / "python").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bindir / "python").chmod(0o755)
    env = {**shell_env(), "PATH": f"{bindir}:/usr/bin:/bin"}
    # The page's opening block prints the same grid without the extras: both lines run as printed.
    (short,) = [
        c for c in section_commands("# Scaling laws", DOCS / "scaling-laws.md") if c.startswith("GRID=")
    ]
    for line, extra, compute in ((sweep, " tracking=none", "1.7e14"), (short, "", "4e13")):
        log.unlink(missing_ok=True)
        proc = subprocess.run(["bash", "-c", line], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert log.read_text().splitlines() == [
            f"-m eval.laws.point -m --config-name sweep/tiny-scale-tokens name=tiny-scale{extra}",
            f"-m eval.laws.point -m --config-name sweep/tiny-scale-depth name=tiny-scale{extra}",
            "-m eval.laws outputs/sweeps/tiny-scale",
            f"-m eval.plan outputs/sweeps/tiny-scale/laws.json --compute {compute} --batch 16",
        ], line
    scylla = {
        p.tokens: p for p in _points_of("python -m eval.laws.point -m --config-name sweep/tiny-scale-tokens")
    }
    for line, draft, folder in (
        (eagle3, "eagle3", "tiny-scale-eagle3"),
        (eagle2, "eagle", "tiny-scale-eagle2"),
    ):
        points = _points_of(line)
        assert sorted(p.tokens for p in points) == [200_000, 400_000, 1_600_000], line
        for p in points:
            assert (p.draft_name, p.depth, p.axis) == (draft, 1, "tokens"), line
            assert p.output_root == f"outputs/sweeps/{folder}", line
            assert p.eval == scylla[p.tokens].eval  # the same prompts, tokens, temperatures and trees
            assert p.train == scylla[p.tokens].train, line  # the same data, micro-batch and schedule rule
    assert fit.split() == ["python", "-m", "eval.laws", "outputs/sweeps/tiny-scale", "--no-wandb"]
