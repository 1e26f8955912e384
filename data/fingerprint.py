"""Fingerprints and file hashes, computed without importing `train` (data must not depend on it).

Training uses these same functions (`train.modeling.target`, `train.checkpoint`), so a cache made by
`python -m data cache` is recognised by training and every manifest hashes files one way; every check that
an artifact belongs to this tokenizer or target goes through `check_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    # The normaliser and pre-tokenizer too: two readings of one tokenizer.json (as written, or as the
    # model config's class re-interprets it) share a vocabulary but split text differently.
    backend = getattr(tok, "backend_tokenizer", None)
    pipeline = json.loads(backend.to_str()) if backend is not None else {}
    payload = json.dumps(
        {
            "vocab": sorted(tok.get_vocab().items()),
            "special": tok.special_tokens_map,
            "chat_template": getattr(tok, "chat_template", None),
            **{k: pipeline[k] for k in ("normalizer", "pre_tokenizer") if pipeline.get(k) is not None},
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    cfg = model.config.to_dict()
    # These change with the library version or the load dtype, not with the weights.
    for key in ("transformers_version", "torch_dtype", "dtype", "_name_or_path", "attn_implementation"):
        cfg.pop(key, None)
    emb = model.get_input_embeddings().weight
    probe = emb[: min(4, emb.shape[0]), : min(8, emb.shape[1])].float().flatten().tolist()
    payload = json.dumps({"config": cfg, "probe": [round(x, 4) for x in probe]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_fingerprint(
    what: str,
    kind: str,
    want: str | None,
    have: str | None,
    want_from: object = None,
    have_from: object = None,
    error: type[ValueError] = ValueError,
) -> None:
    """Refuse an artifact (draft, vocabulary map, cache, export) made for another tokenizer or target: its
    token ids or features would mean something else. A fingerprint not recorded on either side passes.

    `what` names the artifact, `kind` the fingerprint ("tokenizer", "target"); `*_from` say where each came
    from (a path or model name) so the message tells the user which two things disagree."""
    if want and have and want != have:
        made = f" ({want_from})" if want_from else ""
        this = f" ({have_from})" if have_from else ""
        raise error(f"{what} was built for {kind} {want}{made}, but this {kind} is {have}{this}")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB chunks (checkpoint and cache shards can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()
