"""Weight groups of a draft export, and one perturbed copy of the export per group.

A group is a set of tensors that a loader reads as one thing: each attention projection (q, k, v, o) of a
layer, a layer's MLP (gate, up, down), each norm, fc, the LM head, the embedding, the vocabulary map (d2t),
a Medusa head's block. The perturbation is large (noise three times the tensor's own spread; norms scaled
by 1 + N(0, 1/2); d2t rolled so each draft token maps to its neighbour's target token), so a loader that
reads the group changes what the draft proposes, and one that ignores it does not. Seeded: the same export
gives the same perturbed copies. `strength` scales the noise for a group whose default perturbation leaves the
draft's proposals unchanged (tests/vllm_mutations.py raises it until they move).

Works on the draftforge export folder (config.json + model.safetensors), so it does not depend on the
head classes: the perturbed folder is then exported to the served format like any trained head.
"""

from __future__ import annotations

import json
import re
import shutil
import zlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
NOISE = (
    3.0  # noise std in units of the tensor's own std: at 1, k_proj noise left a head's 147 drafts unchanged
)
# tensor name (without .weight/.bias) -> group label; the first matching rule wins
RULES: tuple[tuple[str, str], ...] = (
    (r"(?:model\.)*layers\.(\d+)\.self_attn\.([qkvo])_proj", r"layer \1 attn \2"),
    (r"(?:model\.)*layers\.(\d+)\.mlp\.\w+_proj", r"layer \1 mlp"),
    (r"(?:model\.)*layers\.(\d+)\.(\w+norm)", r"layer \1 \2"),
    (r"(?:model\.)*norm", "final norm"),
    (r"(?:model\.)*embed_tokens", "embedding"),
    (r"(?:model\.)*lm_head", "lm_head"),
    (r"fc", "fc"),
    (r"d2t", "d2t"),
    (r"t2d", "t2d"),
    (r"blocks\.(\d+)\.(\d+)\.linear", r"medusa head \1 block \2"),
)


def group_of(name: str) -> str:
    """A bias is its own group ("<label> bias"): an engine may build the layer without one and drop the tensor
    while reading the weight (vLLM 0.32's Medusa did, unless the config says `medusa_fc_bias`)."""
    stem = re.sub(r"\.(weight|bias)$", "", name)
    suffix = " bias" if name.endswith(".bias") else ""
    for pattern, label in RULES:
        m = re.fullmatch(pattern, stem)
        if m:
            return m.expand(label) + suffix
    return stem + suffix  # an unknown tensor is its own group: it is still perturbed and reported


TIED = "embedding = lm_head (tied)"


def groups(export: Path) -> dict[str, list[str]]:
    """Group label -> tensor names, in the file's order. A tied embedding and LM head (one parameter written
    under both names, equal tensors) are one group: perturbing one name alone writes a file no export writes,
    which each loader resolves its own way (one keeps the embedding's copy, the other the LM head's)."""
    tensors = load_file(str(export / WEIGHTS))
    embed = [n for n in tensors if group_of(n) == "embedding"]
    head = [n for n in tensors if group_of(n) == "lm_head"]
    tied = len(embed) == len(head) == 1 and torch.equal(tensors[embed[0]], tensors[head[0]])
    out: dict[str, list[str]] = {}
    for name in tensors:
        label = TIED if tied and name in (*embed, *head) else group_of(name)
        out.setdefault(label, []).append(name)
    return out


def perturb(name: str, t: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """`strength` multiplies the noise (a norm's spread too); the vocabulary maps' roll has no strength."""
    if name.endswith("d2t"):
        # our d2t[i] is the target id of draft id i (the served formats write offsets): each draft id now maps
        # to the next one's target token
        return torch.roll(t, -1)
    if name.endswith("t2d"):
        return torch.roll(t, 1)
    if not t.is_floating_point():
        raise ValueError(f"{name}: no perturbation for a {t.dtype} tensor")
    if "norm" in name:
        return t * (1 + 0.5 * strength * torch.randn(t.shape, generator=gen))
    scale = t.float().std() if t.numel() > 1 and t.float().std() > 0 else t.float().abs().mean() + 0.02
    if name.endswith(".bias"):  # biases start at zero and stay small: noise on the scale of the activations
        scale = max(float(scale), 0.3)
    return t + NOISE * strength * scale * torch.randn(t.shape, generator=gen)


def perturbed_copy(export: Path, group: str, out: Path, strength: float = 1.0) -> Path:
    """A copy of `export` with every tensor of `group` perturbed (seeded by the group's name)."""
    tensors = load_file(str(export / WEIGHTS))
    names = groups(export)[group]
    gen = torch.Generator().manual_seed(zlib.crc32(group.encode()))
    first = None
    for name in names:
        if group == TIED and first is not None:
            tensors[name] = tensors[first].clone()  # still one parameter: the same perturbed values
            continue
        tensors[name] = perturb(name, tensors[name], gen, strength).to(tensors[name].dtype).contiguous()
        first = name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = json.loads((export / "config.json").read_text())
    cfg.setdefault("meta", {})["perturbed"] = f"{group} x{strength:g}"
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    save_file(tensors, str(out / WEIGHTS))
    return out
