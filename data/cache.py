"""`python -m data cache`: run the target once over a data set and store the hidden states drafts train on.

Layout of a cache folder:
  plan.json                        written first: what this job makes; a resumed job must match it
  <split>/shard_00000.safetensors  input_ids (n, T) int32, loss_mask (n, T) uint8, layer_<i> (n, T, H)
  manifest.json                    written last: shards with sha256, fingerprints, sizes. No manifest = unfinished.

Layer ids index `hidden_states` (0 = embeddings, i = output of decoder layer i, num_layers = after the final
norm, which is what the EAGLE head reads). Shards are written to a temporary name and renamed, so a killed job
leaves only whole shards; rerunning keeps them (after checking their token ids) and does the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from data.blocks import Blocks, BuildSpec, build_blocks
from data.fingerprint import model_fingerprint, sha256_file, tokenizer_fingerprint
from data.target_io import DTYPES, load_target, normalize_layers

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class CacheJob:
    target: str  # HF name or local folder
    out_dir: str
    splits: dict[str, BuildSpec]  # "train" / "valid" -> what to tokenize
    layers: list[int]  # hidden_states indices to store; -1 = after the final norm
    dtype: str = "float32"  # dtype the target runs in and the cache stores
    batch_size: int = 8
    shard_blocks: int = 512  # sequences per shard
    device: str = "auto"
    progress: bool = True


def bytes_per_token(hidden: int, num_layers: int, dtype: str) -> int:
    """Features plus the int32 token id and the uint8 mask stored beside them."""
    return hidden * num_layers * BYTES[dtype] + 4 + 1


def estimate_bytes(num_tokens: int, hidden: int, num_layers: int, dtype: str) -> int:
    return num_tokens * bytes_per_token(hidden, num_layers, dtype)


def _shard_ok(path: Path, ids: torch.Tensor, keys: set[str]) -> bool:
    """A kept shard must be readable, hold every key, and hold exactly these token ids."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return keys <= set(f.keys()) and torch.equal(f.get_tensor("input_ids"), ids)
    except Exception:  # a corrupt file is recomputed, never trusted
        return False


def _check_disk(out: Path, need: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    if need > free * 0.95:  # leave headroom for the file system and the temporary shard
        raise OSError(
            f"cache needs about {need / 1e9:.2f} GB but {out} has {free / 1e9:.2f} GB free: refusing to start "
            "(fewer layers, --dtype bfloat16, a smaller data.max_tokens, or another disk)"
        )


def run_cache(job: CacheJob) -> dict:
    """Build (or finish) the cache; returns the manifest."""
    out = Path(job.out_dir)
    model, tok = load_target(job.target, job.dtype, job.device)
    n_layers = model.config.num_hidden_layers
    hidden = model.config.hidden_size
    layers = normalize_layers(job.layers, n_layers)
    blocks = {name: build_blocks(spec, tok, what=f"{name} data") for name, spec in job.splits.items()}
    fp = {
        "target": job.target,
        "target_fingerprint": model_fingerprint(model),
        "tokenizer_fingerprint": tokenizer_fingerprint(tok),
    }
    plan = {
        **fp,
        "layers": layers,
        "num_hidden_layers": n_layers,
        "hidden_size": hidden,
        "dtype": job.dtype,
        "shard_blocks": job.shard_blocks,
        "data": {name: spec.fingerprint() for name, spec in job.splits.items()},
        "blocks": {name: list(b.input_ids.shape) for name, b in blocks.items()},
    }
    plan_path = out / "plan.json"
    if plan_path.is_file() and json.loads(plan_path.read_text()) != plan:
        raise FileExistsError(
            f"{out} holds a cache job with other settings (plan.json differs): use a new folder"
        )
    tokens = sum(b.input_ids.numel() for b in blocks.values())
    need = estimate_bytes(tokens, hidden, len(layers), job.dtype)
    _check_disk(out, need)
    plan_path.write_text(json.dumps(plan, indent=1))
    print(
        f"[cache] {tokens} tokens x {len(layers)} layer(s) x {hidden} x {job.dtype}: about {need / 1e6:.1f} MB"
    )

    manifest = {**plan, "bytes_per_token": bytes_per_token(hidden, len(layers), job.dtype), "splits": {}}
    t0 = time.perf_counter()
    for name, b in blocks.items():
        manifest["splits"][name] = _write_split(job, model, b, out / name, layers)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)
    manifest["complete"] = True
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest


def _write_split(job: CacheJob, model: torch.nn.Module, blocks: Blocks, out: Path, layers: list[int]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    n, seq_len = blocks.input_ids.shape
    keys = {"input_ids", "loss_mask", *(f"layer_{i}" for i in layers)}
    device = next(model.parameters()).device
    shards = []
    bar = tqdm(total=n, desc=f"cache {out.name}", disable=not job.progress, unit="seq")
    for k, start in enumerate(range(0, n, job.shard_blocks)):
        stop = min(start + job.shard_blocks, n)
        path = out / f"shard_{k:05d}.safetensors"
        ids = blocks.input_ids[start:stop]
        if not (path.is_file() and _shard_ok(path, ids, keys)):
            tensors: dict[str, list[torch.Tensor]] = {f"layer_{i}": [] for i in layers}
            for s in range(0, stop - start, job.batch_size):
                batch = ids[s : s + job.batch_size].to(device, torch.long)
                with torch.no_grad():
                    hs = model(input_ids=batch, output_hidden_states=True).hidden_states
                for i in layers:
                    tensors[f"layer_{i}"].append(hs[i].to("cpu", DTYPES[job.dtype]))
                bar.update(len(batch))
            flat = {key: torch.cat(v).contiguous() for key, v in tensors.items()}
            flat["input_ids"] = ids.contiguous()
            flat["loss_mask"] = blocks.loss_mask[start:stop].contiguous()
            tmp = path.with_suffix(".tmp")
            save_file(flat, str(tmp))
            os.replace(tmp, path)  # whole shards only: a kill leaves the old state or the new one
        else:
            bar.update(stop - start)
        shards.append({"file": path.name, "start": start, "stop": stop, "sha256": sha256_file(path),
                       "bytes": path.stat().st_size})  # fmt: skip
    bar.close()
    return {"num_blocks": n, "seq_len": seq_len, "shards": shards, "report": blocks.report.summary()}
