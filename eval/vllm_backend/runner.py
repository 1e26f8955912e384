"""Host side of the vLLM backend: find vLLM's python, write a job, run worker.py there, read the result.

vLLM pins its own torch and transformers, so it lives in its own environment (docs/serving.md "Serving engines");
our packages never import vllm. One setting names that environment's python: eval config `vllm.python`,
else the environment variable DRAFTFORGE_VLLM_PYTHON.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ENV_VAR = "DRAFTFORGE_VLLM_PYTHON"
WORKER = Path(__file__).with_name("worker.py")
SPECULATORS_PROBE = Path(__file__).with_name("speculators_probe.py")
# vLLM's CPU build: a 1 GiB KV cache is plenty for the tiny targets; the OMP thread pinning is off so that a
# shared machine's other processes are not starved. Only set when the caller has not set them.
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    # One process: the engine core in-process builds faster and needs no __main__ guard in user code.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
}


class VllmUnavailable(RuntimeError):
    """No usable vLLM environment: the message says how to get one."""


def vllm_python(configured: str = "") -> str:
    path = configured or os.environ.get(ENV_VAR, "")
    if not path:
        raise VllmUnavailable(
            f"no vLLM python configured: set vllm.python=/path/to/venv/bin/python or {ENV_VAR} "
            "(docs/serving.md 'Serving engines (vLLM)' shows how to build that environment)"
        )
    if not Path(path).is_file():
        raise VllmUnavailable(f"vLLM python {path!r} does not exist ({ENV_VAR} / vllm.python)")
    return path


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    for k, v in CPU_ENV.items():
        env.setdefault(k, v)
    env.pop("PYTHONPATH", None)  # our repo's packages must not shadow vLLM's environment
    return env


def run_script(
    python: str, script: Path, job: dict[str, Any], timeout_s: float, workdir: Path | None = None
) -> dict[str, Any]:
    """`python -I script job.json result.json` (-I: neither the cwd nor the script's folder nor PYTHONPATH
    is on sys.path, so only vLLM's environment is imported)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job))
        proc = subprocess.run(
            [python, "-I", str(script), str(job_file), str(result_file)],
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if proc.returncode != 0 or not result_file.is_file():
            raise RuntimeError(
                f"{script.name} in {python} exited {proc.returncode}\n--- stderr tail ---\n{proc.stderr[-4000:]}"
            )
        return json.loads(result_file.read_text())


def run_vllm(python: str, job: dict[str, Any], timeout_s: float = 1800) -> dict[str, Any]:
    """All of job["runs"], in as few worker processes as possible: a worker stops at a refused run."""
    done: dict[str, Any] = {}
    patches: list[str] = []
    while pending := [r for r in job["runs"] if r["name"] not in done]:
        res = run_script(python, WORKER, {**job, "runs": pending}, timeout_s)
        done.update(res["runs"])
        patches += [p for p in res.get("patches", []) if p not in patches]
    return {"runs": done, "patches": patches}
