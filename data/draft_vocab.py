"""The reduced draft vocabulary of EAGLE-3-style heads, built once from token frequencies of training data.

    python -m data vocab --tokenizer DIR --files a.jsonl.gz [b.jsonl ...] --size 1024 --out vocab.safetensors
    python -m data vocab --tokenizer DIR --data fineweb-edu ultrachat --max-tokens 50000000 --balance ...

A head that predicts over the `size` most frequent target tokens has a much smaller LM head; tokens outside
it can never be drafted (the target still emits them). The file holds `d2t` (draft index -> target id,
ascending) and `t2d` (target id -> bool "in the draft vocabulary"), with the tokenizer's fingerprint so a map
built for another tokenizer is refused.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from data.atomic import atomic_file
from data.blocks import build_blocks
from data.fingerprint import check_fingerprint, tokenizer_fingerprint
from data.spec import load_data_config, split_spec
from data.target_io import load_tokenizer
from data.token_reach import never_emitted_ids


def count_tokens(
    files: Sequence[str], tokenizer: PreTrainedTokenizerBase, text_field: str = "text"
) -> np.ndarray:
    """Token counts over JSONL files holding raw text (`text_field`) or chats (`messages`)."""
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"draft vocabulary source {f}: no such file")
        from datasets import load_dataset  # here, not at the top: every training rank imports this module

        ds = load_dataset("json", data_files=[str(f)], split="train")
        if text_field in ds.column_names:
            texts = ds[text_field]
        elif "messages" in ds.column_names:
            texts = [tokenizer.apply_chat_template(m, tokenize=False) for m in ds["messages"]]
        else:
            raise KeyError(f"{f}: no {text_field!r} or 'messages' field (fields: {ds.column_names})")
        for start in range(0, len(texts), 256):
            for ids in tokenizer(list(texts[start : start + 256]), add_special_tokens=False, verbose=False)[
                "input_ids"
            ]:
                counts += np.bincount(ids, minlength=len(counts))[: len(counts)]
    return counts


def count_data_tokens(
    name_or_path: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int | None = None
) -> np.ndarray:
    """Token counts over a data config's training split (a conf/data option or YAML file; local files or HF
    datasets, streamed when the config says so), counting only the tokens a run trains on (the loss mask)."""
    cfg = load_data_config(name_or_path, [] if max_tokens is None else [f"max_tokens={max_tokens}"])
    spec = split_spec(cfg, "train")
    if spec is None:
        raise ValueError(f"data config {name_or_path}: no training data (train_files or hf_dataset)")
    blocks = build_blocks(spec, tokenizer, f"{name_or_path} (draft vocabulary)")
    ids = blocks.input_ids.long()[blocks.loss_mask.bool()]
    return torch.bincount(ids, minlength=len(tokenizer)).numpy()[: len(tokenizer)]


def build_maps(
    counts: np.ndarray, size: int, always: Sequence[int], never: Sequence[int] = ()
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Top-`size` ids by count (special tokens always kept, `never` ids left out), ascending; returns d2t,
    t2d and coverage."""
    if not 0 < size <= len(counts) - len(set(never)):
        raise ValueError(f"draft vocabulary size {size} must be in 1..{len(counts) - len(set(never))}")
    order = np.argsort(-counts, kind="stable")
    skip = set(never)
    chosen = [i for i in dict.fromkeys([*always, *order.tolist()]) if i not in skip][:size]
    d2t = torch.tensor(sorted(chosen), dtype=torch.long)
    t2d = torch.zeros(len(counts), dtype=torch.bool)
    t2d[d2t] = True
    coverage = float(counts[d2t.numpy()].sum() / max(1, counts.sum()))
    return d2t, t2d, coverage


def maps_for(
    tokenizer: PreTrainedTokenizerBase, counts: np.ndarray, size: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """`build_maps` for a tokenizer: its special tokens kept, except ids it can never emit (an unk a byte-level
    BPE never produces, which AutoTokenizer may append past the target's embedding: data/token_reach.py)."""
    return build_maps(counts, size, tokenizer.all_special_ids, never_emitted_ids(tokenizer))


def save_vocab(
    path: Path, d2t: torch.Tensor, t2d: torch.Tensor, tokenizer: PreTrainedTokenizerBase, meta: dict
) -> None:
    info = {"tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "vocab_size": str(len(t2d)), **meta}
    with atomic_file(path) as tmp:
        save_file({"d2t": d2t, "t2d": t2d}, str(tmp), metadata={k: str(v) for k, v in info.items()})


def load_vocab(path: str | Path, tokenizer: PreTrainedTokenizerBase) -> tuple[torch.Tensor, torch.Tensor]:
    """Read d2t/t2d and check they were built for this tokenizer."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"draft vocabulary {path}: no such file (build it with python -m data.draft_vocab)"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        d2t, t2d = f.get_tensor("d2t"), f.get_tensor("t2d")
    have = tokenizer_fingerprint(tokenizer)
    want = meta.get("tokenizer_fingerprint") or "(none recorded)"  # a map must say which tokenizer it fits
    check_fingerprint(f"draft vocabulary {path}", "tokenizer", want, have,
                      f"{meta.get('vocab_size')} tokens", f"{len(tokenizer)} tokens")  # fmt: skip
    if len(t2d) != len(tokenizer):
        raise ValueError(
            f"draft vocabulary {path} was built for {len(t2d)} tokens; this tokenizer has {len(tokenizer)}"
        )
    return d2t, t2d


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m data.draft_vocab", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (usually the target's)")
    p.add_argument("--files", nargs="+", default=[], help="JSONL(.gz) files with a text field or messages")
    p.add_argument(
        "--data",
        nargs="+",
        default=[],
        help="conf/data options or YAML files (their training split; chats count assistant tokens only)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=None, help="per --data source: stop reading after this many"
    )
    p.add_argument("--text-field", default="text")
    p.add_argument(
        "--balance",
        action="store_true",
        help="weigh every file equally (token frequencies per file), so a small chat set next to a large "
        "pretraining corpus still gets its frequent tokens in",
    )
    p.add_argument("--size", type=int, required=True, help="draft vocabulary size")
    p.add_argument("--out", required=True, help="output .safetensors")
    args = p.parse_args(argv)
    tok = load_tokenizer(args.tokenizer, "--tokenizer")
    if not args.files and not args.data:
        p.error("give --files and/or --data")
    per_source = [count_tokens([f], tok, args.text_field) for f in args.files]
    per_source += [count_data_tokens(d, tok, args.max_tokens) for d in args.data]
    if args.balance:
        # Frequencies, scaled back to the total count so the printed coverage stays a token share.
        total = sum(int(c.sum()) for c in per_source)
        freqs = sum(c / max(1, c.sum()) for c in per_source) / len(per_source)
        counts = np.rint(freqs * total).astype(np.int64)
    else:
        counts = sum(per_source)
    d2t, t2d, coverage = maps_for(tok, counts, args.size)
    meta = {
        "size": args.size,
        "coverage": f"{coverage:.6f}",
        "sources": json.dumps([*args.files, *args.data]),
    }
    meta["balance"] = str(args.balance)
    save_vocab(Path(args.out), d2t, t2d, tok, meta)
    print(
        f"draft vocabulary: {args.size} of {len(tok)} tokens, covering {coverage:.2%} of {counts.sum()} "
        f"counted tokens -> {args.out}"
    )


if __name__ == "__main__":
    main()
