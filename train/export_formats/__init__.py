"""What every export format shares (common.py: the target, tensor files, dtypes, the tokenizer check;
card.py: the README card). The formats themselves live in their algorithm's folder
(train/drafts/<name>/export*.py) and are listed by its SPEC.formats; a format module defines NAME,
export(head, meta, out, target, dtype) -> card notes, matches(folder) -> bool and load(folder, target) ->
(head, meta), and DETECT_ORDER (default 0; higher = tried later) when its folders are less marked than others. Entry point: `python -m train.export`.
"""
