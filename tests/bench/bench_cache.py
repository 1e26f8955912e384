"""Hidden-state cache, old padded layout vs real tokens only, side by side in one process.

    python -m tests.bench.bench_cache [--data embedded-dialogues] [--layers 1,2,3,-1] [--dtype float32]
                                      [--limit N] [--order new-first|old-first]

Both writers run the same target over the same records and store the same layers in the same dtype:
(old) every record a full seq_len row, batches of 8 rows (a copy of the writer before the change, kept here
only), (new) `data.cache.run_cache`. Prints on-disk MB, bytes per real token, wall seconds and the ratios, then
the state formula at hidden 4096 in bf16, then the logits-form measurement: the loss (soft CE and forward KL
against a draft-like distribution, the target's own previous layer through its head) computed from the full
logits that the stored final-norm state recomputes exactly, vs from the target's top-k log-probs (k x 6 bytes a
token: a 2-byte id and a 4-byte log-prob), with the relative loss error per k.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from data.blocks import build_blocks  # noqa: E402
from data.cache import CacheJob, run_cache  # noqa: E402
from data.cache_reader import HiddenStateCache  # noqa: E402
from data.fingerprint import sha256_file  # noqa: E402
from data.spec import load_data_config, split_spec  # noqa: E402
from data.target_io import DTYPES, load_target, normalize_layers  # noqa: E402
from train.losses import divergence_per_position  # noqa: E402

TARGET = Path(__file__).resolve().parents[2] / "data" / "embedded" / "targets" / "tiny-llama"


def old_cache(job: CacheJob) -> int:
    """The padded writer as it was (format 1): (n, seq_len) rows, padding computed and stored. Returns bytes."""
    model, tok = load_target(job.target, job.dtype, "cpu")
    layers = normalize_layers(job.layers, model.config.num_hidden_layers)
    total = 0
    for name, spec in job.splits.items():
        b = build_blocks(spec, tok)
        out = Path(job.out_dir) / name
        out.mkdir(parents=True, exist_ok=True)
        for k, start in enumerate(range(0, len(b), job.shard_blocks)):
            ids = b.input_ids[start : start + job.shard_blocks]
            tensors: dict[str, list[torch.Tensor]] = {f"layer_{i}": [] for i in layers}
            for s in range(0, len(ids), job.batch_size):
                with torch.no_grad():
                    hs = model(
                        input_ids=ids[s : s + job.batch_size].long(), output_hidden_states=True
                    ).hidden_states
                for i in layers:
                    tensors[f"layer_{i}"].append(hs[i].to("cpu", DTYPES[job.dtype]))
            flat = {key: torch.cat(v).contiguous() for key, v in tensors.items()}
            flat["input_ids"] = ids.contiguous()
            flat["loss_mask"] = b.loss_mask[start : start + job.shard_blocks].contiguous()
            path = out / f"shard_{k:05d}.safetensors"
            save_file(flat, str(path))
            sha256_file(path)
            total += path.stat().st_size
    return total


def logits_form(cache: Path, target: str, records: int, ks: tuple[int, ...]) -> None:
    """Loss from full logits (recomputed from the stored final-norm state) vs from the target's top-k."""
    model, _ = load_target(target, "float32", "cpu")
    c = HiddenStateCache(cache)
    split = c.split("train")
    n = c.final_layer
    rows = split.get(range(min(records, len(split))), [f"layer_{n}", f"layer_{n - 1}", "loss_mask"])
    mask = rows["loss_mask"].bool()
    head, norm = model.get_output_embeddings(), model.model.norm
    with torch.no_grad():
        t = head(rows[f"layer_{n}"][mask].float())  # exact: the target's logits at every trained position
        d = head(norm(rows[f"layer_{n - 1}"][mask].float()))  # a draft-like guess: one layer short
    vocab = t.shape[-1]
    print(f"\nlogits form over {int(mask.sum())} trained positions (vocab {vocab}); final-norm state = exact")
    print("  form                 bytes/token  soft_ce rel.err  forward_kl rel.err")
    full = {kind: divergence_per_position(d, t, kind).mean().item() for kind in ("soft_ce", "forward_kl")}
    print(f"  final-norm state {'(H x dtype)':>12}  {0:15.2e}  {0:18.2e}")
    for k in ks:
        err = {
            kind: abs(divergence_per_position(d, t, kind, top_k=k).mean().item() - v) / abs(v)
            for kind, v in full.items()
        }
        print(f"  top-{k:<4} log-probs {k * 6:12d}  {err['soft_ce']:15.2e}  {err['forward_kl']:18.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="embedded-dialogues")
    p.add_argument("--layers", default="1,2,3,-1")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--limit", type=int, default=None, help="first N training records only")
    p.add_argument("--order", default="new-first", choices=["new-first", "old-first"])
    args = p.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    spec = split_spec(load_data_config(args.data, []), "train")
    if args.limit:
        src = Path(tempfile.mkdtemp()) / "records.jsonl"
        with gzip.open(spec.source.files[0], "rt") as f:
            src.write_text("".join(line for _, line in zip(range(args.limit), f, strict=False)))
        spec = split_spec(load_data_config(args.data, [f"train_files=[{src}]"]), "train")
    root = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    jobs = {w: CacheJob(str(TARGET), str(root / w), {"train": spec}, layers, args.dtype, progress=False,
                        target_dtype=args.dtype) for w in ("old", "new")}  # fmt: skip
    seconds, size = {}, {}
    for w in ("new", "old") if args.order == "new-first" else ("old", "new"):
        t0 = time.perf_counter()
        size[w] = (
            old_cache(jobs[w])
            if w == "old"
            else sum(s["bytes"] for s in run_cache(jobs[w])["splits"]["train"]["shards"])
        )
        seconds[w] = time.perf_counter() - t0
    m = HiddenStateCache(root / "new").manifest
    real, slots = m["tokens"]["train"], m["blocks"]["train"][0] * m["blocks"]["train"][1]
    print(f"load average {os.getloadavg()[0]:.2f}; {m['blocks']['train'][0]} records, {real} real tokens in "
          f"{slots} slots ({100 * (1 - real / slots):.0f}% padding); layers {m['layers']} {args.dtype}")  # fmt: skip
    print("  layout      MiB   bytes/real token   wall s")
    for w in ("old", "new"):
        print(f"  {w:6} {size[w] / 2**20:10.1f} {size[w] / real:18.0f} {seconds[w]:8.1f}")
    print(
        f"  old/new {size['old'] / size['new']:8.2f}x smaller {seconds['old'] / seconds['new']:.2f}x faster"
    )
    fused = len(layers) - (m["num_hidden_layers"] in m["layers"])
    print(f"\nstate per real token at hidden 4096 bf16: {fused} fused x 8192 = {fused * 8192} + final-norm state "
          f"8192 (the logits form) + 5 (int32 id, uint8 mask) = {fused * 8192 + 8192 + 5}")  # fmt: skip
    logits_form(root / "new", str(TARGET), 256, (1, 4, 16, 64, 256))
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
