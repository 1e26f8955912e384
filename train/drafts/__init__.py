"""Draft algorithms, one folder each (`train/drafts/<name>/`, its `SPEC` in `__init__.py`), found by the
registry (`train/drafts/registry.py`). Adding an algorithm is one new folder: docs/adding-an-algorithm.md.
This file imports nothing, so importing an algorithm's module does not load every other algorithm."""
