"""Benchmark (not collected by pytest): our engine vs Hugging Face assisted generation, same dense draft.

    python tests/bench/bench_eval_vs_hf_assisted.py                    # trains a 2-layer draft first (~2 min)
    python tests/bench/bench_eval_vs_hf_assisted.py --draft /path/to/hf-causal-lm

Same target, draft, prompts, greedy decoding, batch 1 (what HF's `assistant_model` supports), k drafted
tokens per step (HF's schedule pinned to a constant k). Wall time covers each whole generate call (prefill
included on both sides, since HF's cannot be split). Prints tokens/s side by side and the ratios (ours chain /
HF assisted, ours target alone / HF greedy), each of our engine's step split into draft / verify (target
forward) / bookkeeping, and what a depth-d tree's drafting costs in single draft forwards (a chain of k=1
drafts with exactly one draft forward per step, measured in the same run).

The draft training here is a deliberately small stand-in (next-token CE + KL to the target on the shipped
docs), only so the comparison runs on a draft that gets tokens accepted.
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
from transformers import LlamaConfig, LlamaForCausalLM

from data.embedded_paths import CORPUS_DIR, TINY_LLAMA_DIR
from eval.config import PromptsConfig
from eval.drafters import DraftSettings, NoDrafter
from eval.drafters.dense import DenseDrafter, load_dense
from eval.engine import BatchStats, Engine, eos_token_ids
from eval.prompts import load_prompts
from train.modeling.target import FrozenTarget, TargetConfig


def train_dense(target: FrozenTarget, steps: int, layers: int, out: Path) -> Path:
    torch.manual_seed(0)
    c = target.model.config
    cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=2 * c.hidden_size,
                      num_hidden_layers=layers, num_attention_heads=c.num_attention_heads,
                      num_key_value_heads=c.num_attention_heads, max_position_embeddings=c.max_position_embeddings,
                      tie_word_embeddings=True, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)  # fmt: skip
    draft = LlamaForCausalLM(cfg)
    draft.get_input_embeddings().weight.data.copy_(target.model.get_input_embeddings().weight)  # warm start
    ids: list[int] = []
    with gzip.open(CORPUS_DIR / "pydocs_train.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            ids += target.tokenizer(json.loads(line)["text"])["input_ids"]
            if len(ids) > steps * 8 * 128 // 2:
                break
    stream = torch.tensor(ids)
    opt = torch.optim.AdamW(draft.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    for step in range(steps):
        starts = torch.randint(0, len(stream) - 129, (8,))
        batch = torch.stack([stream[s : s + 128] for s in starts])
        with torch.no_grad():
            teacher = target.model(input_ids=batch).logits[:, :-1]
        logits = draft(input_ids=batch).logits[:, :-1]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        kl = F.kl_div(
            F.log_softmax(logits, -1), F.log_softmax(teacher, -1), log_target=True, reduction="batchmean"
        )
        loss = ce + kl / 128
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"draft step {step:4d}  ce {ce.item():.3f}  kl/token {kl.item() / 128:.3f}  {time.perf_counter() - t0:.0f}s"
            )
    draft.save_pretrained(out)
    return out


SPLITS: dict[str, BatchStats] = {}  # our engines' summed step costs, by row name


def run_ours(
    engine: Engine, prompts: list[list[int]], n: int, name: str = ""
) -> tuple[list[list[int]], float]:
    t0 = time.perf_counter()
    total = SPLITS.setdefault(name, BatchStats(batch_size=1))
    outs = []
    for p in prompts:
        g = engine.generate([p], n)
        outs.append(g.rows[0].tokens)
        for key in ("steps", "draft_time", "verify_time", "decode_time"):
            setattr(total, key, getattr(total, key) + getattr(g.stats, key))
    return outs, time.perf_counter() - t0


@torch.inference_mode()
def run_hf(target: FrozenTarget, prompts: list[list[int]], n: int, eos: set[int], assistant=None):
    outs, t0 = [], time.perf_counter()
    for p in prompts:
        ids = torch.tensor([p])
        kw = {"assistant_model": assistant} if assistant is not None else {}
        gen = target.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                    eos_token_id=sorted(eos), pad_token_id=min(eos), **kw)  # fmt: skip
        outs.append(gen[0, len(p) :].tolist())
    return outs, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--draft", help="a HF causal-LM directory sharing the target's tokenizer; default: train one"
    )
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--save-draft", help="keep the trained draft here (reuse it with --draft)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    target = TargetConfig(name_or_path=str(TINY_LLAMA_DIR), attn_implementation="sdpa").load("cpu")
    eos, n = eos_token_ids(target), args.max_new_tokens
    prompts = [
        p.input_ids for p in load_prompts(PromptsConfig(num_prompts=args.prompts), target.tokenizer).prompts
    ]
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(args.save_draft or Path(tmp) / "dense")
        path = args.draft or str(train_dense(target, args.steps, args.layers, where))
        draft = load_dense(path, target)
        draft.generation_config.num_assistant_tokens = args.k
        draft.generation_config.num_assistant_tokens_schedule = "constant"  # HF's default adapts k
        chain = DraftSettings(mode="chain", draft_length=args.k)
        engines = {"ours, target alone": Engine(target, NoDrafter(), chain, eos),
                   f"ours, chain k={args.k}": Engine(target, DenseDrafter(draft), chain, eos),
                   "ours, tree 5/4/24": Engine(target, DenseDrafter(draft), DraftSettings(), eos),
                   "ours, chain k=1": Engine(target, DenseDrafter(draft), DraftSettings(mode="chain", draft_length=1),
                                             eos)}  # fmt: skip
        run_hf(target, prompts[:1], 4, eos, draft)  # warm-up both sides
        run_ours(engines[f"ours, chain k={args.k}"], prompts[:1], 4)
        rows = {"HF generate, target alone": run_hf(target, prompts, n, eos),
                f"HF assisted, k={args.k}": run_hf(target, prompts, n, eos, draft)}  # fmt: skip
        rows.update({name: run_ours(e, prompts, n, name) for name, e in engines.items()})
        SPLITS.pop("", None)
    reference = rows["HF generate, target alone"][0]
    print(f"\nload average {os.getloadavg()[0]:.2f}; tiny-llama target, {args.layers}-layer dense draft, {len(prompts)} prompts x {n} new tokens, batch 1, "
          "greedy, 1 CPU thread (prefill included)")  # fmt: skip
    print("engine".ljust(30) + "tokens/s".rjust(12) + "  same output as HF greedy")
    tps = {}
    for name, (outs, secs) in rows.items():
        tps[name] = sum(len(o) for o in outs) / secs
        print(
            name.ljust(30)
            + f"{tps[name]:12.1f}  {sum(a == b for a, b in zip(outs, reference, strict=True))}/{len(outs)}"
        )
    hf = tps[f"HF assisted, k={args.k}"]
    print(f"\nours chain / HF assisted: {tps[f'ours, chain k={args.k}'] / hf:.2f}x   "
          f"ours tree / HF assisted: {tps['ours, tree 5/4/24'] / hf:.2f}x   "
          f"ours target alone / HF greedy: {tps['ours, target alone'] / tps['HF generate, target alone']:.2f}x")  # fmt: skip
    print("\nstep split (ms per step: draft / verify / bookkeeping, bookkeeping share)")
    for name, st in SPLITS.items():
        other = st.decode_time - st.draft_time - st.verify_time
        print(f"{name:30} {1e3 * st.draft_time / st.steps:7.2f} {1e3 * st.verify_time / st.steps:7.2f} "
              f"{1e3 * other / st.steps:7.2f}   {100 * other / st.decode_time:5.1f}%")  # fmt: skip
    one = SPLITS["ours, chain k=1"].draft_time / SPLITS["ours, chain k=1"].steps  # one draft forward a step
    tree = SPLITS["ours, tree 5/4/24"].draft_time / SPLITS["ours, tree 5/4/24"].steps
    print(
        f"\ndepth-5 tree drafting: {1e3 * tree:.2f} ms = {tree / one:.2f} single draft forwards "
        f"({1e3 * one:.2f} ms each; target: at most 5 x 1.10 = 5.5)"
    )


if __name__ == "__main__":
    main()
