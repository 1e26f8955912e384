"""Asset builders: the programs that made the files shipped in the repo. Not imported by `train`, `data` or
`eval` (a test checks), run from a clone only when an asset is rebuilt:

    python -m builders.embedded --python-doc DIR --chatterbot DIR --out data/embedded   # corpus, tokenizer,
                                                                    # and training the tiny targets
    python -m builders.tasks                                        # eval/assets/tasks.jsonl

`launch/fetch_raw_sources.sh` fetches the raw sources `builders.embedded` reads.
"""
