"""`python -m data {validate,regenerate,cache,vocab}`: see each subcommand's --help.

Data sets are named like in training: a conf/data option or a YAML path (`--data embedded-dialogues`),
changed with trailing `key=value` overrides (`seq_len=128 max_tokens=100000`), or files given directly.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

from data.spec import load_data_config, split_spec
from data.target_io import DTYPES

# The same resolution as training's target.tokenizer (data.target_io.load_tokenizer).
TOKENIZER_HELP = (
    "target or tokenizer folder (read as transformers' AutoTokenizer reads it), or a tokenizer.json file "
    "(read as written)"
)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="embedded-pydocs", help="conf/data option or YAML file")
    p.add_argument("overrides", nargs="*", help="data config overrides, key=value")


def _spec(args: argparse.Namespace, split: str):
    spec = split_spec(load_data_config(args.data, args.overrides), split)
    if spec is None:
        raise SystemExit(f"--data {args.data}: no {split} data")
    return spec


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["vocab"]:  # the draft vocabulary builder has its own parser
        if importlib.util.find_spec("data.draft_vocab") is None:
            raise SystemExit("data vocab: data/draft_vocab.py is not installed")
        from data.draft_vocab import main as vocab_main

        return vocab_main(argv[1:]) or 0
    ap = argparse.ArgumentParser(prog="python -m data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser(
        "validate", help="check and tokenize every record; report bad ones as file:line: reason"
    )
    v.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    _data_args(v)
    r = sub.add_parser("regenerate", help="answer the prompts with the frozen target")
    r.add_argument("--target", required=True)
    r.add_argument("--tokenizer", help=TOKENIZER_HELP + "; default: the target's")
    r.add_argument("--out", required=True, help="output JSONL (resumes from <out>.partial)")
    r.add_argument("--split", default="train", choices=["train", "valid"])
    for flag, typ, default in (("--batch-size", int, 16), ("--max-new-tokens", int, 128),
                               ("--temperature", float, 0.0), ("--top-p", float, 1.0), ("--seed", int, 0),
                               ("--limit", int, None)):  # fmt: skip
        r.add_argument(flag, type=typ, default=default)
    r.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    r.add_argument(
        "--backend", default="hf", choices=["hf", "vllm"], help="vllm: $DRAFTFORGE_VLLM_PYTHON's vLLM"
    )
    _data_args(r)
    c = sub.add_parser("cache", help="store target hidden states for data.mode=offline")
    c.add_argument("--target", required=True)
    c.add_argument("--tokenizer", help=TOKENIZER_HELP + "; default: the target's")
    c.add_argument("--out", required=True)
    c.add_argument(
        "--layers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[-1],
        help="comma-separated hidden_states ids to store; -1 = after the final norm (eagle); eagle3 on a "
        "4-layer target: 1,2,3,-1 (its fused low/mid/high layers plus the final one for the logits)",
    )
    c.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"], help="stored")
    c.add_argument("--target-dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    c.add_argument(
        "--batch-size", type=int, default=8, help="target forward: at most this x seq_len positions"
    )
    c.add_argument("--shard-blocks", type=int, default=512, help="at most this many records per shard")
    c.add_argument("--shard-tokens", type=int, default=1 << 18, help="and at most this many tokens")
    c.add_argument("--no-valid", action="store_true", help="cache the training split only")
    _data_args(c)
    args = ap.parse_args(argv)

    if args.cmd == "validate":
        from data.blocks import build_blocks
        from data.target_io import load_tokenizer

        tok = load_tokenizer(args.tokenizer, "--tokenizer")
        for split in ("train", "valid"):
            spec = split_spec(load_data_config(args.data, args.overrides), split)
            if spec is not None:
                b = build_blocks(spec, tok, f"{split} data")
                print(f"[data] {split}: {b.report.summary()}; {len(b)} sequences of {spec.seq_len}")
    elif args.cmd == "regenerate":
        from data.regenerate import RegenJob, run_regenerate

        spec = _spec(args, args.split)
        job = RegenJob(args.target, spec.source, args.out, spec.format, args.batch_size, args.max_new_tokens,
                       args.temperature, args.top_p, args.seed, args.limit, args.dtype,
                       chat_template=spec.chat_template, validation=spec.validation,
                       max_bad_fraction=spec.max_bad_fraction, backend=args.backend,
                       tokenizer=args.tokenizer)  # fmt: skip
        print(json.dumps(run_regenerate(job)))
    else:
        from data.cache import CacheJob, run_cache

        splits = {"train": _spec(args, "train")}
        valid = split_spec(load_data_config(args.data, args.overrides), "valid")
        if valid is not None and not args.no_valid:
            splits["valid"] = valid
        job = CacheJob(args.target, args.out, splits, args.layers, args.dtype, args.batch_size, args.shard_blocks,
                       target_dtype=args.target_dtype, shard_tokens=args.shard_tokens,
                       tokenizer=args.tokenizer)  # fmt: skip
        m = run_cache(job)
        print(json.dumps({k: m[k] for k in ("layers", "dtype", "bytes_per_token", "tokens", "seconds")}))
    return 0


if __name__ == "__main__":
    from data.cache_reader import CacheMismatch
    from data.validate import DataValidationError

    try:
        sys.exit(main())
    except (DataValidationError, CacheMismatch, FileNotFoundError, FileExistsError, OSError) as err:
        print(f"python -m data: {err}", file=sys.stderr)  # the message is the report: no traceback
        sys.exit(2)
