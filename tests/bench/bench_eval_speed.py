"""Benchmark (not collected by pytest): tau and speed-up of a random vs a briefly trained EAGLE head.

    python -m tests.bench.bench_eval_speed --target tiny-llama --steps 400

Also prints each engine step split into draft / verify (target forward) / bookkeeping.

The training here is a deliberately minimal stand-in for `python -m train` (feature regression plus soft
cross-entropy to the target's next-token distribution on the shipped Python-docs corpus), only so the eval
has a draft worth measuring; it is not the product's trainer.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from data.embedded_paths import CORPUS_DIR, EMBEDDED_DIR
from data.tracking import LoggerConfig
from eval.config import EvalConfig, PromptsConfig
from eval.run import evaluate
from train.drafts.eagle.drafter import random_eagle_head
from train.drafts.io import save_draft
from train.modeling.target import FrozenTarget, TargetConfig


def token_stream(target: FrozenTarget, max_tokens: int) -> torch.Tensor:
    ids: list[int] = []
    with gzip.open(CORPUS_DIR / "pydocs_train.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            ids += target.tokenizer(json.loads(line)["text"])["input_ids"]
            if len(ids) >= max_tokens:
                break
    return torch.tensor(ids[:max_tokens])


def train_head(target: FrozenTarget, steps: int, batch: int, seq: int, lr: float) -> torch.nn.Module:
    torch.manual_seed(0)
    head = random_eagle_head(target).train()
    stream = token_stream(target, steps * batch * seq // 4 + seq + 1)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    t0 = time.perf_counter()
    for step in range(steps):
        starts = torch.randint(0, len(stream) - seq - 1, (batch,))
        ids = torch.stack([stream[s : s + seq] for s in starts])
        feats = target.features(ids)
        # Position t reads (embedding of x_{t+1}, f_t) and predicts f_{t+1} (whose argmax is x_{t+2}).
        pred = head(target.embed(ids[:, 1:]), feats.hidden[:, :-1])
        want = feats.hidden[:, 1:]
        reg = F.smooth_l1_loss(pred, want)
        logp = F.log_softmax(target.lm_head(pred), dim=-1)
        ce = -(F.softmax(feats.logits[:, 1:], dim=-1) * logp).sum(-1).mean()
        loss = reg + 0.1 * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"step {step:4d}  reg {reg.item():.4f}  ce {ce.item():.3f}  {time.perf_counter() - t0:.0f}s"
            )
    return head.eval()


def run_eval(target: FrozenTarget, draft: str, out: Path, args: argparse.Namespace) -> dict:
    cfg = EvalConfig(
        target=TargetConfig(name_or_path=target.name_or_path),
        logger=LoggerConfig(name="none", mode="disabled"),
        draft_path=draft,
        prompts=PromptsConfig(num_prompts=args.prompts),
        mode=args.mode,
        draft_length=args.k,
        max_new_tokens=args.max_new_tokens,
        device="cpu",
        cpu_threads=1,
        progress=False,
        output_dir=str(out),
    )
    return evaluate(cfg, target=target).metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="tiny-llama", help="a shipped target's name or a model directory")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--mode", default="chain", choices=["chain", "tree"])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    path = args.target if Path(args.target).is_dir() else str(EMBEDDED_DIR / "targets" / args.target)
    target = TargetConfig(name_or_path=path).load("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        head = train_head(target, args.steps, args.batch, args.seq, args.lr)
        export = save_draft(head.state_dict(), head.config, Path(tmp) / "draft", dict(target.fingerprint()))
        rows = {"random": run_eval(target, "random", Path(tmp) / "random", args)}
        rows[f"trained {args.steps} steps"] = run_eval(target, str(export), Path(tmp) / "trained", args)
    print(
        f"\n{args.target}, {args.mode}, k={args.k}, {args.prompts} prompts x {args.max_new_tokens} tokens, 1 CPU thread"
    )
    keys = [
        "tau",
        "acceptance_at_1",
        "spec_tokens_per_s",
        "baseline_tokens_per_s",
        "speedup",
        "speedup_ceiling",
        "draft_ms",
        "verify_ms",
        "overhead_ms",
    ]
    print("draft".ljust(22) + "".join(k.rjust(22) for k in keys))
    for name, m in rows.items():
        print(name.ljust(22) + "".join(f"{m['all'][k] or 0:22.3f}" for k in keys))
    for name, m in rows.items():  # the engine step split: draft / verify (target forward) / bookkeeping
        a = m["all"]
        step = a["draft_ms"] + a["verify_ms"] + a["overhead_ms"]
        print(f"{name}: step {step:.2f} ms = draft {100 * a['draft_ms'] / step:.0f}% + verify "
              f"{100 * a['verify_ms'] / step:.0f}% + bookkeeping {100 * a['overhead_ms'] / step:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
