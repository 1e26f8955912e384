"""The prepared GPU check: on a machine with a CUDA GPU, install what is missing and run every check that
needs one, within a time budget (8 minutes by default), then write one report (docs/gpu-check.md).

    python launch/gpu_check.py --dry-run          # list what it would run, with each step's time limit
    python launch/gpu_check.py [--wheels DIR] [--vllm-python PY] [--out outputs/gpu-check]

Steps, in order: the project's dependencies (skipped when importable; torch is never touched), flash-attn from
a wheel (PyPI ships only its source, which takes far longer than the budget to build, so a missing wheel
skips it, saying why), the `gpu`-marked tests (tests/test_gpu.py: flash-attn varlen vs sdpa on packed
chats, a bf16 training step, nccl), the packed-chats benchmark, and vLLM's CUDA build serving one export
whose counts must equal ours. A step that fails does not stop the next; one that cannot fit in what is left
of the budget is skipped, saying so. Machines without network take `--wheels DIR` (pip --no-index).
Exit code: 0 when nothing failed, 1 when a step failed, 2 on a machine without CUDA (unless --allow-cpu,
which runs the steps anyway: the GPU tests then skip, saying why; the CPU tests of this script use it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT_IMPORTS = (
    "deepspeed",
    "hydra",
    "omegaconf",
    "transformers",
    "datasets",
    "wandb",
    "safetensors",
    "scipy",
)
BUDGET_S = 480


@dataclass
class Step:
    name: str
    what: str
    cmd: list[str]
    timeout_s: int
    skip: str | None = None  # a reason decided before running (already installed, not asked for, ...)
    optional: bool = False  # an install that may fail (no wheel, no network): then skipped, saying why
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    name: str
    status: str  # passed | failed | skipped | timeout
    seconds: float
    detail: str
    tests: list[dict[str, str]] = field(default_factory=list)


def pip_install(args: argparse.Namespace, python: str, *specs: str) -> list[str]:
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if args.wheels:
        cmd += ["--no-index", "--find-links", str(args.wheels)]
    return [*cmd, *specs]


def pytest_cmd(junit: Path, *targets: str) -> list[str]:
    # addopts cleared: the suite's own (xdist workers, durations) are for the CPU suite, not these few tests.
    return [sys.executable, "-m", "pytest", "-q", "-rs", "-o", "addopts=", f"--junitxml={junit}", *targets]


def plan(args: argparse.Namespace) -> list[Step]:
    out: Path = args.out
    missing = [m for m in PROJECT_IMPORTS if importlib.util.find_spec(m) is None]
    has_flash = importlib.util.find_spec("flash_attn") is not None
    vllm_py = args.vllm_python or str(out / "vllm-venv" / "bin" / "python")
    steps = [
        Step(
            "install",
            "the project and its dependencies (torch as installed)",
            pip_install(args, sys.executable, "-e", f"{REPO}[dev]"),
            120,
            None if missing else "every dependency imports already",
        ),
        Step(
            "flash-attn",
            "flash-attn from a wheel only (its source build outlasts the budget)",
            pip_install(args, sys.executable, "--only-binary=:all:", "flash-attn"),
            60,
            "installed already" if has_flash else None,
            optional=True,
        ),
        Step(
            "gpu-tests",
            "tests marked gpu (tests/test_gpu.py)",
            pytest_cmd(out / "gpu-tests.xml", "-m", "gpu", "tests/test_gpu.py"),
            150,
        ),
        Step(
            "packed-chats-bench",
            "packed vs trimmed+grouped SFT rows, real tokens/s (target 1.3x)",
            [sys.executable, "tests/bench/bench_chat_batching.py", "--steps", "6", "deepspeed=none"],
            90,
        ),
        Step(
            "vllm-install",
            "vLLM's CUDA build + speculators in their own venv",
            [
                "bash",
                "-c",
                f"{sys.executable} -m venv {out / 'vllm-venv'} && "
                + " ".join(
                    pip_install(args, str(out / "vllm-venv" / "bin" / "python"), "vllm", "speculators==0.9.0")
                ),
            ],
            150,
            "--vllm-python given" if args.vllm_python else None,
            optional=True,
        ),
        Step(
            "vllm-serve",
            "vLLM serves one EAGLE-3 export; its counts must equal our engine's",
            pytest_cmd(
                out / "vllm.xml",
                "tests/test_vllm_engine.py::test_cli_engine_vllm_writes_the_side_by_side_report",
            ),
            150,
            env={"DRAFTFORGE_VLLM_PYTHON": vllm_py},
        ),
    ]
    return [s for s in steps if not args.only or s.name in args.only]


def junit_tests(path: Path) -> list[dict[str, str]]:
    """Each test case's outcome and, for a skip or failure, its first line."""
    if not path.is_file():
        return []
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status, why = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status, why = tag, (node.get("message") or node.text or "").strip().splitlines()[0][:300]
                break
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "status": status, "why": why})
    return rows


def run_step(step: Step, left_s: float, log_dir: Path) -> Outcome:
    if step.skip:
        return Outcome(step.name, "skipped", 0.0, step.skip)
    if step.name == "vllm-serve" and not Path(step.env["DRAFTFORGE_VLLM_PYTHON"]).is_file():
        return Outcome(step.name, "skipped", 0.0, f"no vLLM python at {step.env['DRAFTFORGE_VLLM_PYTHON']}")
    limit = min(step.timeout_s, int(left_s))
    if limit < 5:  # too little left to start a process and import torch
        return Outcome(
            step.name, "skipped", 0.0, f"budget: {left_s:.0f} s left, the step is given {step.timeout_s} s"
        )
    log = log_dir / f"{step.name}.log"
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(step.cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, **step.env}, start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # its whole process group: torchrun ranks, pip's builds
            proc.wait()
            rc = None
    seconds = time.monotonic() - t0
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-12:]
    if rc is None:
        return Outcome(step.name, "timeout", seconds, f"stopped after {limit} s (log: {log})")
    status = "passed" if rc == 0 else "skipped" if step.optional else "failed"
    return Outcome(step.name, status, seconds, "\n".join(tail) if rc or "bench" in step.name else "")


def summarise(outcome: Outcome, out: Path) -> Outcome:
    """Test steps: every test's outcome; a step whose tests all skipped says so rather than 'passed'."""
    xml = {"gpu-tests": out / "gpu-tests.xml", "vllm-serve": out / "vllm.xml"}.get(outcome.name)
    if xml is not None:
        outcome.tests = junit_tests(xml)
        if (
            outcome.status == "passed"
            and outcome.tests
            and all(t["status"] == "skipped" for t in outcome.tests)
        ):
            outcome.status, outcome.detail = (
                "skipped",
                f"all {len(outcome.tests)} tests skipped: {outcome.tests[0]['why']}",
            )
    if outcome.name == "packed-chats-bench" and outcome.status == "passed":
        m = re.search(r"^packed\s.*?([\d.]+)x\s*$", outcome.detail, re.M)
        outcome.detail += f"\npacked vs trimmed+grouped: {m.group(1)}x (target 1.3x)" if m else ""
    return outcome


def environment() -> dict[str, str]:
    import torch

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": str(torch.version.cuda)}
    if torch.cuda.is_available():
        env["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
        env["bf16"] = str(torch.cuda.is_bf16_supported())
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    else:
        env["gpu"] = "none"
    return env


def write_report(
    out: Path, env: dict[str, str], outcomes: list[Outcome], budget_s: int, wall_s: float
) -> Path:
    lines = [f"# GPU check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"wall {wall_s:.0f} s of a {budget_s} s budget; " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "| step | status | s | detail |", "|---|---|---|---|"]  # fmt: skip
    for o in outcomes:
        first = o.detail.splitlines()[-1] if o.detail else ""
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.0f} | {first.replace('|', '/')} |")
    for o in outcomes:
        if o.tests:
            lines += ["", f"## {o.name}", ""] + [
                f"- {t['status']}: {t['test']} {t['why']}".rstrip() for t in o.tests
            ]
        if o.status in ("failed", "timeout") or (o.detail and "\n" in o.detail):
            lines += ["", f"## {o.name} output (tail)", "", "```", o.detail, "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    doc = {"environment": env, "budget_s": budget_s, "wall_s": wall_s, "steps": [asdict(o) for o in outcomes]}
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="list the steps and their commands; run nothing")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu-check", help="report and logs")
    p.add_argument("--budget-s", type=int, default=BUDGET_S, help="wall-clock budget for all steps")
    p.add_argument("--wheels", type=Path, help="install from this folder of wheels only (no network)")
    p.add_argument("--vllm-python", help="a python that has vLLM's CUDA build (skips installing one)")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    p.add_argument("--allow-cpu", action="store_true", help="run on a machine without CUDA (GPU tests skip)")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    steps = plan(args)
    if args.dry_run:
        print(f"GPU check plan ({args.budget_s} s budget; report: {args.out / 'report.md'}):")
        for s in steps:
            note = f"skip: {s.skip}" if s.skip else f"up to {s.timeout_s} s"
            env = " ".join(f"{k}={v}" for k, v in s.env.items())
            print(f"- {s.name} ({note}): {s.what}\n    {env + ' ' if env else ''}{' '.join(s.cmd)}")
        return 0
    env = environment()
    if env["gpu"] == "none" and not args.allow_cpu:
        print(f"gpu_check: no CUDA device here (torch {env['torch']}): nothing to check; "
              "--dry-run lists the plan", file=sys.stderr)  # fmt: skip
        return 2
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    t0, outcomes = time.monotonic(), []
    for step in steps:
        left = args.budget_s - (time.monotonic() - t0)
        outcome = summarise(run_step(step, left, args.out / "logs"), args.out)
        print(f"[{time.monotonic() - t0:5.0f} s] {outcome.name}: {outcome.status}", flush=True)
        outcomes.append(outcome)
    report = write_report(args.out, env, outcomes, args.budget_s, time.monotonic() - t0)
    print(report.read_text())
    return 1 if any(o.status in ("failed", "timeout") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
