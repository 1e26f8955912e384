"""Runs INSIDE vLLM's own environment (imports only vllm and the stdlib): the vLLM backend of
`python -m data regenerate --backend vllm`.

    <vllm python> -I data/vllm_generate.py job.json

job.json: {"target", "dtype", "max_model_len", "batches": [{"prompts": [[token ids]], "seed"}],
"max_new_tokens", "temperature", "top_p", "stop_token_ids"}. Builds the LLM once, then prints one JSON line
per batch (MARK + {"outputs": [[new token ids]], "seconds": generate() wall time}) as soon as it is done, so the caller can write and flush it:
a killed run loses at most the batch in flight, as with the HF backend.
"""

from __future__ import annotations

import json
import sys
import time

MARK = "DRAFTFORGE_BATCH "  # vLLM logs to stdout too: our lines are the marked ones


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    with open(sys.argv[1]) as f:
        job = json.load(f)
    llm = LLM(
        model=job["target"],
        dtype=job.get("dtype", "float32"),
        max_model_len=job["max_model_len"],
        enforce_eager=True,
        seed=0,
    )
    for batch in job["batches"]:
        params = SamplingParams(
            max_tokens=job["max_new_tokens"],
            temperature=job["temperature"],
            top_p=job["top_p"],
            seed=batch["seed"],
            stop_token_ids=job["stop_token_ids"],
        )
        t0 = time.perf_counter()
        res = llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in batch["prompts"]], params, use_tqdm=False
        )
        outputs = [list(r.outputs[0].token_ids) for r in res]
        print(MARK + json.dumps({"outputs": outputs, "seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
