"""EAGLE-3 training side by side with vLLM's speculators 0.9 trainer: target tokens/s, and tau at T=0.

    python -m tests.bench.bench_vs_speculators [--tokens N] [--epochs 6] [--reps 2] [--prompts 12] [--no-tau]

Same inputs for both: the shipped dialogues (conf/data/embedded-dialogues) as the same token rows, the tiny-llama
target, target features from layers 1, 2, 3, one draft decoder layer, the same 2048-token draft vocabulary (one
`python -m data vocab` file; the peer gets its d2t/t2d from it), 3 training-time-test steps, fp32, 2 CPU ranks
under torchrun with one torch thread each (OMP_NUM_THREADS=1), lr 1e-3, --epochs passes over the rows (all 968
dialogues by default: 56,166 real tokens, so 6 epochs are ~337k target tokens).

Ours runs our real entry point, `python -m torch.distributed.run --nproc_per_node 2 -m train draft=eagle3 ...`,
online (the target runs every step) and offline (`data.mode=offline` on a `python -m data cache` of the same
rows). The peer runs speculators' own `speculators train` code (tests/bench/speculators_peer.py, under the
speculators python: $DRAFTFORGE_VLLM_PYTHON) offline, from hidden-state files written from that same cache, in
the layout its docs' offline pipeline writes (`hs_<i>.safetensors` beside an Arrow dataset). Its online mode
fetches hidden states from a running vLLM server (--vllm-endpoint) and is not driven here, so both of our
modes are compared with the peer's offline number. The peer needs a small CPU shim (its trainer assumes an
accelerator; speculators_peer.cpu_shim says what it changes), `--draft-attn-impl sdpa` (flex attention is its
GPU default) and `--loss-implementation eager` (its fused loss imports Triton).

Target tokens/s = real tokens (padding excluded) trained on by all ranks / seconds inside the training loop,
each side by its own clock: ours from metrics.jsonl (tokens_seen over the logged windows' time), the peer from
the per-step profile its trainer logs (tokens where document_ids != -1, fetch to optimizer step). Start-up,
model loading, validation and saving are outside both. Runs are interleaved (ours online, peer, ours offline;
reversed on odd reps) because the machine is shared. tau at T=0 (bonus token counted) comes from our eval
(`python -m eval`, chain and tree) on our offline export and on the peer's last checkpoint, which our eval
imports from speculators' layout. Without a speculators python it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
PEER = HERE.with_name("speculators_peer.py")
TARGET_DIR = REPO / "data" / "embedded" / "targets" / "tiny-llama"
DATA = "embedded-dialogues"
LAYERS = [1, 2, 3]
VOCAB = 2048
TTT = 3
MICRO_BATCH = 8  # our train.micro_batch_size default: rows per rank per step


def peer_python() -> tuple[str | None, str]:
    """(speculators' python, "") or (None, why not), found as the engine tests find vLLM's."""
    path = os.environ.get("DRAFTFORGE_VLLM_PYTHON", "")
    if not path:
        return None, "DRAFTFORGE_VLLM_PYTHON is not set (docs/serving.md builds that environment)"
    if not Path(path).is_file():
        return None, f"DRAFTFORGE_VLLM_PYTHON={path} does not exist"
    probe = subprocess.run(
        [path, "-I", "-c", "import importlib.metadata as m, speculators, torch; print(m.version(\"speculators\"), torch.__version__)"],
        capture_output=True, text=True, env=clean_env(),
    )  # fmt: skip
    if probe.returncode != 0:
        return None, f"{path} cannot import speculators: {probe.stderr.strip().splitlines()[-1:]}"
    return path, probe.stdout.strip()


def clean_env(threads: int = 1) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    env.pop(
        "PYTHONPATH", None
    )  # `python -m` from the repo root finds our packages; the peer must not see them
    return env


def run(cmd: list[str], log: Path, env: dict[str, str]) -> None:
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"[bench] failed ({proc.returncode}), log {log}:\n" + log.read_text()[-4000:])


def build_inputs(work: Path, tokens: int | None) -> None:
    """Our hidden-state cache of the rows and the draft vocabulary file, built once under `work` (both sides
    read them; tests/bench/bench_train_flops.py too)."""
    py, env = sys.executable, clean_env()
    cache, vocab = work / "cache", work / "vocab.safetensors"
    if not (cache / "manifest.json").is_file():
        layers = ",".join(map(str, [*LAYERS, -1]))  # -1: the final-norm state our objective reads logits from
        budget = [] if tokens is None else [f"max_tokens={tokens}"]
        run([py, "-m", "data", "cache", "--target", str(TARGET_DIR), "--data", DATA, "--out", str(cache),
             f"--layers={layers}", "--dtype", "float32", "--no-valid", *budget], work / "cache.log", env)  # fmt: skip
    if not vocab.is_file():
        budget = [] if tokens is None else ["--max-tokens", str(tokens)]
        run([py, "-m", "data", "vocab", "--tokenizer", str(TARGET_DIR), "--data", DATA, *budget,
             "--size", str(VOCAB), "--out", str(vocab)], work / "vocab.log", env)  # fmt: skip


def head_overrides(work: Path) -> list[str]:
    """The `python -m train` settings both trainers share here: draft, target, rows, layers, vocabulary, TTT."""
    return [
        "draft=eagle3", "target=tiny-llama", f"data={DATA}", "stage=sft", "logger=none", "train.progress=false",
        "train.eval_every=0", "train.save_every=0", "data.valid_files=[]",
        f"draft.feature_layers=[{','.join(map(str, LAYERS))}]", "draft.num_layers=1", f"draft.ttt_steps={TTT}",
        f"draft.vocab_path={work / 'vocab.safetensors'}", f"train.micro_batch_size={MICRO_BATCH}",
    ]  # fmt: skip


def prepare(args: argparse.Namespace, work: Path, peer: str) -> dict[str, Any]:
    """Our cache and vocabulary, and the peer's data folder made from them (kept between runs)."""
    env = clean_env()
    cache, vocab, peer_data = work / "cache", work / "vocab.safetensors", work / "peer-data"
    build_inputs(work, args.tokens)
    if not (peer_data / "rows.json").is_file():
        shutil.rmtree(peer_data, ignore_errors=True)
        run([peer, "-I", str(PEER), "prepare", "--cache", str(cache), "--vocab", str(vocab),
             "--target", str(TARGET_DIR), "--out", str(peer_data)], work / "peer-prepare.log", env)  # fmt: skip
        stats = (work / "peer-prepare.log").read_text().strip().splitlines()[-1]
        (peer_data / "rows.json").write_text(stats)
    return json.loads((peer_data / "rows.json").read_text())


def ours(args: argparse.Namespace, work: Path, stats: dict[str, Any], mode: str, name: str) -> dict[str, Any]:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    over = [*head_overrides(work), "deepspeed=zero2", f"train.max_tokens={args.epochs * stats['tokens']}",
            f"output_dir={out}"]  # fmt: skip
    if args.tokens is not None:
        over.append(f"data.max_tokens={args.tokens}")
    if mode == "offline":
        over += ["data.mode=offline", f"data.cache_dir={work / 'cache'}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "train", *over]  # fmt: skip
    env = clean_env()
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    out.mkdir(parents=True)
    run(cmd, out / "run.log", env)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    lines = [m for m in lines if "train/tokens_per_s" in m]
    seconds, prev = 0.0, 0
    for m in lines:  # each logged window: its tokens at its rate -> its seconds
        seconds += (m["train/tokens_seen"] - prev) / m["train/tokens_per_s"]
        prev = m["train/tokens_seen"]
    # tokens_seen counts each row up to its last trained token (data.packing.real_lengths), as the cache and
    # so the peer's rows hold it; an epoch drops the rows that do not fill a last step (< 16), so the total
    # differs a little from epochs x the rows' tokens.
    return {"tokens": prev, "seconds": seconds, "steps": lines[-1]["step"], "export": out / "export"}


def peer_seq_len(stats: dict[str, Any], nproc: int) -> int:
    """The peer packs rows up to --total-seq-len tokens per rank per step; give it the real tokens our
    8-row micro-batches average, so both take about the same number of steps (and at least the longest row,
    which its packer would otherwise cut)."""
    steps = math.ceil(stats["rows"] / (MICRO_BATCH * nproc))
    return max(math.ceil(stats["tokens"] / (steps * nproc)), stats["longest"])


def peer_run(args: argparse.Namespace, work: Path, peer: str, seq_len: int, name: str) -> dict[str, Any]:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [
        peer, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}", str(PEER),
        "train", "--result", str(out / "result"), "--",
        "--speculator-type", "eagle3", "--verifier-name-or-path", str(TARGET_DIR),
        "--data-path", str(work / "peer-data"), "--draft-vocab-size", str(VOCAB), "--num-layers", "1",
        "--target-layer-ids", *map(str, LAYERS), "--ttt-steps", str(TTT), "--draft-attn-impl", "sdpa",
        "--loss-implementation", "eager", "--hidden-states-dtype", "float32", "--num-workers", str(args.peer_workers),
        "--total-seq-len", str(seq_len), "--epochs", str(args.epochs), "--lr", "1e-3", "--log-freq", "1", "--logger", "",
        "--train-data-ratio", str(args.peer_train_ratio), "--save-path", str(out / "ckpt"),
        "--no-norm-output",  # our drafter feeds back the pre-norm state: so the head our eval imports is the one trained
    ]  # fmt: skip
    run(cmd, out / "run.log", clean_env())
    ranks = [json.loads((out / "result" / f"rank{r}.json").read_text()) for r in range(args.nproc)]
    return {
        "tokens": sum(r["tokens"] for r in ranks),
        "seconds": max(r["ms"] for r in ranks) / 1000,  # DDP steps in lockstep: the slower rank's clock
        "steps": ranks[0]["steps"],
        "export": out / "ckpt" / f"epoch{args.epochs - 1}_end",
    }


def tau(args: argparse.Namespace, export: Path, out: Path, imported: bool) -> dict[str, str]:
    """tau at T=0 per decoding, with its 95 % interval over prompts (eval's bootstrap), as printed text."""
    res = {}
    out.mkdir(parents=True, exist_ok=True)
    if imported:  # speculators' checkpoint -> our export (docs/serving.md), checked against the target
        run([sys.executable, "-m", "train.export", "--import", "--draft", str(export), "--out", str(out / "export"),
             "--target", str(TARGET_DIR)], out / "import.log", clean_env())  # fmt: skip
        export = out / "export"
    for mode in ("chain", "tree"):
        d = out / f"eval-{mode}"
        cmd = [sys.executable, "-m", "eval", "target=tiny-llama", f"draft_path={export}", f"output_dir={d}",
               "logger=none", "cpu_threads=1", f"prompts.num_prompts={args.prompts}", f"mode={mode}",
               "temperature=0.0"]  # fmt: skip
        run(cmd, out / f"eval-{mode}.log", clean_env())
        r = json.loads((d / "results.json").read_text())
        m = r["metrics"]["all"] if "metrics" in r else r["all"]
        lo, hi = m.get("tau_ci95") or (float("nan"), float("nan"))
        res[mode] = f"{m['tau']:.3f} [{lo:.3f}, {hi:.3f}]"
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="data.max_tokens: the rows both sides train on (default: all)",
    )
    p.add_argument("--epochs", type=int, default=6, help="passes over the rows, each side")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--prompts", type=int, default=12, help="eval prompts for tau at T=0")
    p.add_argument("--no-tau", action="store_true", help="timings only")
    p.add_argument("--peer-train-ratio", type=float, default=0.99, help="the peer holds the rest out (> 0)")
    p.add_argument(
        "--peer-workers",
        type=int,
        default=0,
        help="the peer's DataLoader workers (its default, 12 spawned processes, only contends for 2 cores; "
        "ours reads in the training process too)",
    )
    p.add_argument(
        "--work", type=Path, default=None, help="default outputs/bench-vs-speculators-<tokens|all>"
    )
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    peer, version = peer_python()
    if peer is None:
        print(f"[bench] skipped: no speculators trainer to compare with: {version}")
        return
    work = (args.work or REPO / "outputs" / f"bench-vs-speculators-{args.tokens or 'all'}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    stats = prepare(args, work, peer)
    seq_len = peer_seq_len(stats, args.nproc)
    print(
        f"[bench] {stats['rows']} rows, {stats['tokens']:,} real tokens (data={DATA}, max_tokens={args.tokens}) x {args.epochs} epochs; "
        f"layers {LAYERS}, 1 draft layer, vocab {VOCAB}, TTT {TTT}, {args.nproc} ranks x 1 thread; "
        f"peer speculators/torch {version}, --total-seq-len {seq_len}; work {work}",
        flush=True,
    )
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for rep in range(args.reps):
        order = ["ours online", "peer offline", "ours offline"]
        for label in order if rep % 2 == 0 else order[::-1]:
            name = f"{label.replace(' ', '-')}-{rep}"
            if label.startswith("ours"):
                res = ours(args, work, stats, label.split()[1], name)
            else:
                res = peer_run(args, work, peer, seq_len, name)
            res["tps"] = res["tokens"] / res["seconds"]
            rows.append((rep, label, res))
            print(f"[bench] rep {rep} {label}: {res['tokens']:,} tokens in {res['seconds']:.1f} s, "
                  f"{res['steps']} steps, {res['tps']:,.0f} tokens/s", flush=True)  # fmt: skip
    print("\ntarget tokens/s (all ranks, padding excluded, training loop only)")
    print(
        f"{'rep':>3}  {'ours online':>12}  {'ours offline':>12}  {'peer offline':>12}  {'online/peer':>11}  {'offline/peer':>12}"
    )
    for rep in range(args.reps):
        got = {label: res["tps"] for r, label, res in rows if r == rep}
        on, off, pe = got["ours online"], got["ours offline"], got["peer offline"]
        print(f"{rep:>3}  {on:>12,.0f}  {off:>12,.0f}  {pe:>12,.0f}  {on / pe:>10.2f}x  {off / pe:>11.2f}x")
    best = {
        lab: max(res["tps"] for _, la, res in rows if la == lab)
        for lab in ("ours online", "ours offline", "peer offline")
    }
    print(f"{'best':>3}  {best['ours online']:>12,.0f}  {best['ours offline']:>12,.0f}  {best['peer offline']:>12,.0f}  "
          f"{best['ours online'] / best['peer offline']:>10.2f}x  {best['ours offline'] / best['peer offline']:>11.2f}x")  # fmt: skip
    print("(peer online: speculators 0.9 generates hidden states online only through a vLLM server; not run)")
    if args.no_tau:
        return
    last = {label: res for r, label, res in rows if r == args.reps - 1}
    taus = {side: tau(args, last[label]["export"], work / f"tau-{side}", side == "peer") for side, label in
            (("ours", "ours offline"), ("peer", "peer offline"))}  # fmt: skip
    print(
        f"\ntau at T=0 (bonus token counted; 95 % interval over {args.prompts} prompts), last rep's offline runs"
    )
    print(f"{'':>5}  {'chain':>21}  {'tree':>21}")
    for side, t in taus.items():
        print(f"{side:>5}  {t['chain']:>21}  {t['tree']:>21}")


if __name__ == "__main__":
    main()
