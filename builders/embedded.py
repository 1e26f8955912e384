"""Rebuild the assets shipped in `data/embedded/` (corpus, tokenizer, tiny targets) from raw sources.

    bash launch/fetch_raw_sources.sh /tmp/raw
    python -m builders.embedded --python-doc /tmp/raw/doc --chatterbot /tmp/raw/cb --out data/embedded

Deterministic for a given torch build and thread count (fixed seeds, sorted inputs, mtime-free gzip).
Each stage reads the previous stage's output from --out, so `--only targets` retrains from the shipped
corpus and tokenizer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from builders.corpus import (
    build_dialogues,
    build_docs,
    docs_version,
    licenses_markdown,
    load_chatterbot,
    read_jsonl_gz,
    sources_dir,
    write_jsonl_gz,
)
from builders.targets import TrainSettings, token_stream, train_target, windows
from builders.tokenizer import check_tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

STAGES = ("corpus", "tokenizer", "targets")
TARGETS = ("tiny-llama", "tiny-qwen2", "deep-llama")


def build_corpus(python_doc: Path, chatterbot: Path, out: Path) -> None:
    src = sources_dir(python_doc)
    cb = load_chatterbot(chatterbot)
    corpus = out / "corpus"
    docs_train, docs_valid = build_docs(src)
    dlg_train, dlg_valid, counts = build_dialogues(cb, src)
    for name, rows in [
        ("pydocs_train", docs_train),
        ("pydocs_valid", docs_valid),
        ("dialogues_train", dlg_train),
        ("dialogues_valid", dlg_valid),
    ]:
        write_jsonl_gz(corpus / f"{name}.jsonl.gz", rows)
    version = docs_version(python_doc)
    (corpus / "LICENSES.md").write_text(licenses_markdown(src, version, cb, counts))
    sources = {"python3.11-doc": version, "chatterbot-corpus": cb.version}
    stats = {
        "sources": sources,
        "pydocs": {"train_files": len(docs_train), "valid_files": len(docs_valid),
                   "train_chars": sum(len(r["text"]) for r in docs_train),
                   "valid_chars": sum(len(r["text"]) for r in docs_valid)},
        "dialogues": {"train": len(dlg_train), "valid": len(dlg_valid), **counts},
    }  # fmt: skip
    (corpus / "sources.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))


def _corpus_texts(corpus: Path) -> list[str]:
    docs = [r["text"] for r in read_jsonl_gz(corpus / "pydocs_train.jsonl.gz")]
    # Dialogues as plain "question\nanswer" text: the tokenizer should see chat-style English too.
    chats = [
        "\n".join(m["content"] for m in r["messages"])
        for r in read_jsonl_gz(corpus / "dialogues_train.jsonl.gz")
    ]
    return docs + chats


def build_tokenizer(out: Path) -> None:
    tok = train_tokenizer(_corpus_texts(out / "corpus"))
    save_tokenizer(tok, out / "tokenizer")
    check_tokenizer(load_tokenizer(out / "tokenizer"))  # check what was saved, not the in-memory object
    print(f"tokenizer: {len(tok)} tokens -> {out / 'tokenizer'}")


def build_targets(out: Path, settings: TrainSettings, names: tuple[str, ...]) -> None:
    corpus = out / "corpus"
    tok = load_tokenizer(out / "tokenizer")
    check_tokenizer(tok)
    sources = json.loads((corpus / "sources.json").read_text())["sources"]
    train_docs = read_jsonl_gz(corpus / "pydocs_train.jsonl.gz")
    train_dlg = read_jsonl_gz(corpus / "dialogues_train.jsonl.gz")
    stream = token_stream(tok, train_docs, train_dlg, settings.dialogue_repeats, settings.seed)
    valid_docs = read_jsonl_gz(corpus / "pydocs_valid.jsonl.gz")
    valid = windows(token_stream(tok, valid_docs, [], 0, settings.seed), settings.seq_len)
    print(f"train stream {len(stream):,} tokens; pydocs_valid {valid[:, 1:].numel():,} tokens")
    for name in names:
        train_target(name, tok, stream, valid, out / "targets" / name, settings, sources)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m builders.embedded", description=__doc__.split("\n")[0])
    p.add_argument("--python-doc", type=Path, help="dpkg-deb -x root of python3.11-doc (or its _sources)")
    p.add_argument("--chatterbot", type=Path, help="chatterbot-corpus wheel, or a folder of wheels")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "embedded")
    p.add_argument("--steps", type=int, default=TrainSettings.steps, help="training steps per target")
    p.add_argument("--only", choices=STAGES, help="run one stage (default: all, in order)")
    p.add_argument(
        "--targets", nargs="+", choices=TARGETS, default=list(TARGETS), help="which targets to train"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the result depends on it)")
    args = p.parse_args(argv)
    stages = (args.only,) if args.only else STAGES
    if "corpus" in stages and (args.python_doc is None or args.chatterbot is None):
        p.error("the corpus stage needs --python-doc and --chatterbot")
    torch.set_num_threads(args.threads)
    if "corpus" in stages:
        build_corpus(args.python_doc, args.chatterbot, args.out)
    if "tokenizer" in stages:
        build_tokenizer(args.out)
    if "targets" in stages:
        build_targets(args.out, TrainSettings(steps=args.steps), tuple(args.targets))


if __name__ == "__main__":
    main()
