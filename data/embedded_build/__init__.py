"""Helpers for `python -m data.build_embedded`: rebuilds the small corpus, tokenizer and targets shipped in
`data/embedded/` from the raw Python docs and chatterbot-corpus (see `launch/fetch_raw_sources.sh`)."""
