"""Runs INSIDE vLLM's own environment (imports only vllm, safetensors and the stdlib): one LLM per draft,
then the draft's weights swapped in place, each swap decoded on the same prompts.

    <vllm python> -I tests/vllm_mutation_worker.py job.json result.json

job.json: eval/vllm_backend/worker.py's job (target, prompts, max_new_tokens, temperature, top_p, seed,
batch_sizes = [1]) whose runs may carry "swaps": [{"name", "weights": <a served export folder>}].
Building an LLM costs 10-40 s here; a swap costs a reload and a decode. The swap goes through vLLM's own
in-place reload (vllm/model_executor/model_loader/reload/inplace.py: reload_weights), which feeds the file's
tensors to the draft model's `load_weights` (the loader a fresh build uses, names and all) and redoes the
CPU weight packing after it; prefix caching is off so that no KV block drafted with the old weights is
reused. The last swap of every run should be the unperturbed export again: its counts must equal the build's.
result.json: {"runs": {name: {"build_s", "by_bs", "swaps": {swap: {"by_bs"} | {"error"}}} | {"error"}}}.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# The shared worker's decode loop and counters (it imports only vllm and the stdlib too).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval" / "vllm_backend"))
import worker  # noqa: E402


def _reload_draft(w: Any, path: str) -> list[str]:
    """In the engine's worker: reload the draft model from `path`; returns the draft parameters that the
    file did not cover (vLLM keeps their previous values; for EAGLE heads the target's shared embedding)."""
    from safetensors.torch import load_file
    from vllm.model_executor.model_loader.reload.inplace import reload_weights

    drafter = w.model_runner.drafter
    draft_model_config = drafter.vllm_config.speculative_config.draft_model_config
    config = SimpleNamespace(
        model_config=draft_model_config, load_config=drafter.vllm_config.load_config, lora_config=None
    )
    names_before = {n for n, _ in drafter.model.named_parameters()}
    weights = {}
    for f in sorted(Path(path).glob("*.safetensors")):  # the served folder's weight files, as a build reads
        weights.update(load_file(str(f)))
    reload_weights(config, drafter.model, iter(weights.items()), None, True)
    return sorted(names_before - set(weights))


def run(job: dict) -> dict[str, Any]:
    from vllm import LLM

    results: dict[str, Any] = {}
    patches = worker.patch_cpu_expand_kernel()
    for spec in job["runs"]:
        t0 = time.perf_counter()
        try:
            llm = LLM(
                model=job["target"],
                dtype=job.get("dtype", "float32"),
                max_model_len=job.get("max_model_len", 512),
                enforce_eager=True,
                enable_prefix_caching=False,
                seed=job["seed"],
                speculative_config=spec["speculative_config"],
                disable_log_stats=False,
            )
            build_s = time.perf_counter() - t0
            llm.generate(["warm up"], use_tqdm=False)
            res: dict[str, Any] = {
                "build_s": build_s,
                "by_bs": {str(bs): worker.decode(llm, job, bs) for bs in job["batch_sizes"]},
                "swaps": {},
            }
            for swap in spec.get("swaps", []):
                try:
                    kept = llm.collective_rpc(_reload_draft, args=(swap["weights"],))[0]
                    by_bs = {str(bs): worker.decode(llm, job, bs) for bs in job["batch_sizes"]}
                    res["swaps"][swap["name"]] = {"by_bs": by_bs, "not_in_file": kept}
                except Exception as err:  # one failed swap is a table cell, not the end of the run
                    res["swaps"][swap["name"]] = {"error": f"{type(err).__name__}: {err}"[:1000]}
                    print(traceback.format_exc(), file=sys.stderr, flush=True)
            results[spec["name"]] = res
            del llm
        except Exception as err:
            results[spec["name"]] = {
                "error": f"{type(err).__name__}: {err}"[:2000],
                "where": worker.where(err),
            }
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            break  # a failed build leaves vLLM half torn down (see worker.py); the host starts a new process
    return {"runs": results, "patches": patches}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run(job)))


if __name__ == "__main__":
    main()
