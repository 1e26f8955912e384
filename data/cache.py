"""`python -m data cache`: run the target once over a data set and store the hidden states drafts train on.

Layout of a cache folder:
  plan.json                        written first: what this job makes; a resumed job must match it
  <split>/shard_00000.safetensors  real tokens only, records laid end to end:
                                     offsets (n + 1,) int64   record r is rows offsets[r]:offsets[r+1] (the index)
                                     input_ids (tokens,) int32, loss_mask (tokens,) uint8, layer_<i> (tokens, H)
  manifest.json                    written last: shards with sha256, record and token counts, fingerprints, sizes.
                                   No manifest = unfinished.

A record keeps its tokens up to its last trained one (`data.packing.real_lengths`): every objective's loss at
a trained position reads only positions up to it (the models are causal), so nothing past it is ever used, and
padding is never stored. The reader pads rows back to seq_len, so training sees the blocks it always saw.

Layer ids index `hidden_states` (0 = embeddings, i = output of decoder layer i, num_layers = after the final
norm, which is what the EAGLE head reads). The target's logits are not stored: training recomputes them from
the final-norm state through the frozen LM head (one matmul, exact); the top-k alternative changes the loss
(tests/bench/bench_cache.py measures by how much). The target runs on records sorted by length in batches cut
to their longest record, so it computes almost no padding either. Shards are written to a temporary name and
renamed, so a killed job leaves only whole shards; rerunning keeps them (after checking their token ids and
index) and does the rest.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from data.atomic import atomic_file
from data.blocks import Blocks, BuildSpec, build_blocks
from data.cache_reader import FORMAT
from data.fingerprint import sha256_file, target_fingerprints, tokenizer_fingerprint
from data.packing import real_lengths
from data.target_io import DTYPES, load_target, normalize_layers, resolve_tokenizer, torch_dtype


@dataclass
class CacheJob:
    target: str  # HF name or local folder
    out_dir: str
    splits: dict[str, BuildSpec]  # "train" / "valid" -> what to tokenize
    layers: list[int]  # hidden_states indices to store; -1 = after the final norm
    dtype: str = "float32"  # dtype the cache stores (the CLI defaults to bfloat16)
    batch_size: int = 8  # the target's batch holds at most batch_size x seq_len positions
    shard_blocks: int = 512  # at most this many records per shard
    device: str = "auto"
    progress: bool = True
    target_dtype: str = "float32"  # dtype the target runs in (store bf16 of an fp32 run by default)
    shard_tokens: int = 1 << 18  # and at most this many tokens (a shard closes at whichever comes first)
    tokenizer: str | None = None  # target.tokenizer: a tokenizer folder or tokenizer.json (None = target's)


def bytes_per_token(hidden: int, num_layers: int, dtype: str) -> int:
    """Features plus the int32 token id and the uint8 mask stored beside them (per real token)."""
    return hidden * num_layers * DTYPES[dtype].itemsize + 4 + 1


def estimate_bytes(num_tokens: int, hidden: int, num_layers: int, dtype: str) -> int:
    return num_tokens * bytes_per_token(hidden, num_layers, dtype)


def shard_bounds(lengths: list[int], max_records: int, max_tokens: int) -> list[tuple[int, int]]:
    """[start, stop) record ranges: a shard closes at max_records records or max_tokens tokens (never empty)."""
    bounds, start, tokens = [], 0, 0
    for r, n in enumerate(lengths):
        if r > start and (r - start >= max_records or tokens + n > max_tokens):
            bounds.append((start, r))
            start, tokens = r, 0
        tokens += n
    if start < len(lengths):
        bounds.append((start, len(lengths)))
    return bounds


def _packed(blocks: Blocks, lengths: list[int], start: int, stop: int) -> dict[str, torch.Tensor]:
    """The real tokens of records [start, stop) end to end, and the offsets index over them."""
    n = torch.tensor(lengths[start:stop], dtype=torch.int64)
    offsets = torch.zeros(len(n) + 1, dtype=torch.int64)
    offsets[1:] = n.cumsum(0)
    keep = torch.arange(blocks.input_ids.shape[1]) < n[:, None]  # (records, seq_len)
    return {
        "offsets": offsets,
        "input_ids": blocks.input_ids[start:stop][keep].contiguous(),
        "loss_mask": blocks.loss_mask[start:stop][keep].contiguous(),
    }


def _shard_ok(path: Path, index: dict[str, torch.Tensor], keys: set[str]) -> bool:
    """A kept shard must be readable, hold every key, and hold exactly these token ids and offsets."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return keys <= set(f.keys()) and all(
                torch.equal(f.get_tensor(k), index[k]) for k in ("offsets", "input_ids")
            )
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
    torch_dtype(job.dtype, "--dtype")  # a clear error for an unknown dtype, before the target loads
    out = Path(job.out_dir)
    model, tok = load_target(job.target, job.target_dtype, job.device, tokenizer=job.tokenizer)
    n_layers = model.config.num_hidden_layers
    hidden = model.config.hidden_size
    layers = normalize_layers(job.layers, n_layers)
    blocks = {name: build_blocks(spec, tok, what=f"{name} data") for name, spec in job.splits.items()}
    lengths = {name: real_lengths(b.loss_mask).tolist() for name, b in blocks.items()}
    fp = {
        "target": job.target,
        **target_fingerprints(job.target, model),
        "tokenizer_fingerprint": tokenizer_fingerprint(tok),
        "tokenizer": resolve_tokenizer(job.target, job.tokenizer),
    }
    plan = {
        **fp,
        "format": FORMAT,
        "layers": layers,
        "num_hidden_layers": n_layers,
        "hidden_size": hidden,
        "dtype": job.dtype,
        "target_dtype": job.target_dtype,
        "shard_blocks": job.shard_blocks,
        "shard_tokens": job.shard_tokens,
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        "data": {name: spec.fingerprint() for name, spec in job.splits.items()},
        "blocks": {name: list(b.input_ids.shape) for name, b in blocks.items()},
        "tokens": {name: sum(n) for name, n in lengths.items()},
    }
    plan_path = out / "plan.json"
    if plan_path.is_file() and json.loads(plan_path.read_text()) != plan:
        raise FileExistsError(
            f"{out} holds a cache job with other settings (plan.json differs): use a new folder"
        )
    tokens = sum(plan["tokens"].values())
    need = estimate_bytes(tokens, hidden, len(layers), job.dtype)
    _check_disk(out, need)
    plan_path.write_text(json.dumps(plan, indent=1))
    slots = sum(b.input_ids.numel() for b in blocks.values())
    print(
        f"[cache] {tokens} real tokens ({slots - tokens} padded slots not stored) x {len(layers)} layer(s) x "
        f"{hidden} x {job.dtype}: about {need / 1e6:.1f} MB"
    )

    manifest = {**plan, "bytes_per_token": bytes_per_token(hidden, len(layers), job.dtype), "splits": {}}
    t0 = time.perf_counter()
    for name, b in blocks.items():
        manifest["splits"][name] = _write_split(job, model, b, lengths[name], out / name, layers)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)
    manifest["complete"] = True
    with atomic_file(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


@torch.no_grad()
def _features(
    model: torch.nn.Module, ids: torch.Tensor, lengths: list[int], layers: list[int], job: CacheJob
) -> dict[str, torch.Tensor]:
    """layer_<i> (sum(lengths), H) for records `ids` (n, seq_len), their real tokens end to end.

    Records run through the target sorted by length, each batch cut to its longest record (right padding
    never changes a causal model's earlier positions), so padding is neither stored nor computed.
    """
    device = next(model.parameters()).device
    dtype = DTYPES[job.dtype]
    order = sorted(range(len(lengths)), key=lambda r: lengths[r])
    budget = job.batch_size * ids.shape[1]  # positions per forward, as many as the padded writer used
    rows: dict[int, dict[str, torch.Tensor]] = {}
    s = 0
    while s < len(order):
        e = s + 1  # grow the batch while its padded size (rows x longest, the last one) fits the budget
        while e < len(order) and (e + 1 - s) * max(lengths[order[e]], 1) <= budget:
            e += 1
        batch_rows = order[s:e]
        width = max(max(lengths[r] for r in batch_rows), 1)
        batch = ids[batch_rows, :width].to(device, torch.long)
        hs = model(input_ids=batch, output_hidden_states=True).hidden_states
        for j, r in enumerate(batch_rows):
            rows[r] = {f"layer_{i}": hs[i][j, : lengths[r]].to("cpu", dtype) for i in layers}
        s = e
    return {f"layer_{i}": torch.cat([rows[r][f"layer_{i}"] for r in range(len(lengths))]) for i in layers}


def _write_split(
    job: CacheJob, model: torch.nn.Module, blocks: Blocks, lengths: list[int], out: Path, layers: list[int]
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    n, seq_len = blocks.input_ids.shape
    keys = {"offsets", "input_ids", "loss_mask", *(f"layer_{i}" for i in layers)}
    shards = []
    bar = tqdm(total=n, desc=f"cache {out.name}", disable=not job.progress, unit="seq")
    for k, (start, stop) in enumerate(shard_bounds(lengths, job.shard_blocks, job.shard_tokens)):
        path = out / f"shard_{k:05d}.safetensors"
        index = _packed(blocks, lengths, start, stop)
        if not (path.is_file() and _shard_ok(path, index, keys)):
            flat = {
                **index,
                **_features(model, blocks.input_ids[start:stop], lengths[start:stop], layers, job),
            }
            with atomic_file(path) as tmp:  # whole shards only: a kill leaves the old state or the new one
                save_file({key: v.contiguous() for key, v in flat.items()}, str(tmp))
        bar.update(stop - start)
        shards.append({"file": path.name, "start": start, "stop": stop, "tokens": int(index["offsets"][-1]),
                       "sha256": sha256_file(path), "bytes": path.stat().st_size})  # fmt: skip
    bar.close()
    return {"num_blocks": n, "seq_len": seq_len, "tokens": sum(lengths), "shards": shards,
            "report": blocks.report.summary()}  # fmt: skip
