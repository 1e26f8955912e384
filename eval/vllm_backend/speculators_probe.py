"""Runs INSIDE the vLLM/speculators environment: imports only speculators, torch, safetensors and the stdlib.

    <vllm python> -I eval/vllm_backend/speculators_probe.py job.json result.json

Loads an export with `speculators.SpeculatorModel.from_pretrained` (as a user of that library would) and
returns the step-0 draft logits for given inputs, plus every parameter that is all zero or not finite. The
library cannot attach the verifier, so the caller passes the target's hidden states itself (job["inputs"]:
a safetensors file with input_ids [1, T] and hidden_states [1, T, 3H], the three fused target layers).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from speculators import SpeculatorModel

    with open(sys.argv[1]) as f:
        job = json.load(f)
    model = SpeculatorModel.from_pretrained(job["folder"]).float().eval()
    bad = [
        name
        for name, p in model.named_parameters()
        if not torch.isfinite(p).all() or (p.numel() > 1 and not p.any())
    ]
    x = load_file(job["inputs"])
    captured: list[torch.Tensor] = []
    model.lm_head.register_forward_hook(lambda mod, inp, out: captured.append(out.detach()))
    t = x["input_ids"].shape[1]
    with torch.no_grad():
        model(
            hidden_states=x["hidden_states"],
            input_ids=x["input_ids"],
            document_ids=torch.zeros_like(x["input_ids"]),
            position_ids=torch.arange(t).unsqueeze(0),  # the library's default starts at 1; ours at 0
            ttt_steps=1,
        )
    save_file({"logits": captured[0].contiguous()}, job["logits_out"])
    with open(sys.argv[2], "w") as f:
        json.dump({"bad_parameters": bad, "class": type(model).__name__}, f)


if __name__ == "__main__":
    main()
