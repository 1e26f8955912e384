"""Medusa heads in the FasterDecoding/Medusa checkpoint layout.

Defined by: FasterDecoding/Medusa `medusa/model/medusa_model.py` (MedusaConfig: medusa_num_heads,
medusa_num_layers, base_model_name_or_path; medusa_head = ModuleList of Sequential(ResBlock x L,
Linear(H, V, bias=False)); ResBlock = x + SiLU(linear(x)) with a biased linear) and its training script,
which saves `medusa_head.state_dict()` to medusa_lm_head.safetensors, i.e. keys "{k}.{j}.linear.weight",
"{k}.{j}.linear.bias" and "{k}.{L}.weight" (read at commit 2b8020f). TensorRT-LLM's Medusa converter
(`load_medusa_hf`) reads exactly these keys. Medusa always has a per-head LM head: a head sharing the
target's is written with a copy of the target's LM head, and re-imported as shared when it still equals it.
Medusa's model builds the L blocks of a head from ONE ResBlock repeated ([ResBlock] * L), so with L > 1
blocks must be identical to load there; distinct blocks are refused, naming the tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from train.drafts.medusa.head import MedusaHeadConfig, MedusaHeads
from train.export_formats.card import vllm_commands
from train.export_formats.common import (
    DTYPES,
    ExportError,
    Target,
    cast,
    read_json,
    read_tensors,
    write_json,
    write_tensors,
)

NAME = "medusa"
WEIGHTS = "medusa_lm_head.safetensors"


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    if not isinstance(head, MedusaHeads):
        raise ExportError(f"{NAME}: only Medusa heads have this layout, not {type(head).__name__}")
    cfg = head.config
    n_layers = cfg.num_layers
    tensors: dict[str, torch.Tensor] = {}
    shared = None if head.lm_heads is not None else target.model().get_output_embeddings().weight.detach()
    for k, blocks in enumerate(head.blocks):
        for j, block in enumerate(blocks):
            if j and not (
                torch.equal(block.linear.weight, blocks[0].linear.weight)
                and torch.equal(block.linear.bias, blocks[0].linear.bias)
            ):
                raise ExportError(
                    f"{NAME}: {k}.{j}.linear.weight differs from {k}.0.linear.weight, but Medusa's model repeats "
                    "one ResBlock per head ([ResBlock] * medusa_num_layers); it cannot hold distinct blocks"
                )
            tensors[f"{k}.{j}.linear.weight"] = block.linear.weight
            tensors[f"{k}.{j}.linear.bias"] = block.linear.bias
        tensors[f"{k}.{n_layers}.weight"] = head.lm_heads[k].weight if head.lm_heads is not None else shared
    write_tensors(out / WEIGHTS, cast(tensors, DTYPES[dtype]))
    write_json(
        out / "config.json",
        {
            "medusa_num_heads": cfg.num_heads,
            "medusa_num_layers": n_layers,
            # Our blocks' linears are biased (as Medusa's own ResBlock); vLLM builds them without a bias unless
            # this key says so, and then drops the bias tensors without a word (models/medusa.py, 0.32).
            "medusa_fc_bias": True,
            "base_model_name_or_path": target.path,
            "version": "2",
            "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size,
            "torch_dtype": dtype,
        },
    )
    target.tokenizer.save_pretrained(str(out))  # Medusa's scripts save the tokenizer beside the heads
    return [
        "```python",
        "from medusa.model.medusa_model import MedusaModel",
        f"model = MedusaModel.from_pretrained('{out}')  # base model: config.base_model_name_or_path",
        "```",
        "vLLM (`method: medusa`, one proposed token per head):",
        *vllm_commands(target.path, out, "medusa", cfg.num_heads),
    ]


def matches(src: Path) -> bool:
    return (src / WEIGHTS).is_file() or (
        (src / "config.json").is_file() and "medusa_num_heads" in read_json(src / "config.json")
    )


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    k_heads, n_layers = int(c["medusa_num_heads"]), int(c["medusa_num_layers"])
    raw = read_tensors(src, (WEIGHTS, "medusa_lm_head.pt"))
    vocab, hidden = raw[f"0.{n_layers}.weight"].shape
    lm = [raw[f"{k}.{n_layers}.weight"].float() for k in range(k_heads)]
    # Shared again when every head's LM head is still the target's: far fewer parameters to train on.
    share = target is not None and all(
        torch.equal(w, target.model().get_output_embeddings().weight.float()) for w in lm
    )
    heads = MedusaHeads(
        MedusaHeadConfig(
            hidden_size=hidden, vocab_size=vocab, num_heads=k_heads, num_layers=n_layers, share_lm_head=share
        )
    )
    with torch.no_grad():
        for k, blocks in enumerate(heads.blocks):
            for j, block in enumerate(blocks):
                block.linear.weight.copy_(raw[f"{k}.{j}.linear.weight"])
                block.linear.bias.copy_(raw[f"{k}.{j}.linear.bias"])
            if heads.lm_heads is not None:
                heads.lm_heads[k].weight.copy_(lm[k])
    expected = {
        f"{k}.{j}.linear.{p}" for k in range(k_heads) for j in range(n_layers) for p in ("weight", "bias")
    }
    expected |= {f"{k}.{n_layers}.weight" for k in range(k_heads)}
    if set(raw) != expected:
        raise ExportError(
            f"{src}/{WEIGHTS}: unexpected tensors {sorted(set(raw) - expected)}, missing {sorted(expected - set(raw))}"
        )
    return heads, {"imported_format": NAME}
