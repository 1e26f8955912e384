"""Fingerprints and file hashes, computed without importing `train` (data must not depend on it).

Training uses these same functions (`train.modeling.target`, `train.checkpoint`), so a cache made by
`python -m data cache` is recognised by training and every manifest hashes files one way; every check that
an artifact belongs to this tokenizer or target goes through `check_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase

from data.target_weights import WEIGHTS_PREFIX, weights_fingerprint


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
    """The old, weak target fingerprint (the "probe"): the config and 32 rounded embedding values. A
    fine-tune that leaves those rows alone keeps it; kept so artifacts that recorded only it still load."""
    cfg = model.config.to_dict()
    # These change with the library version or the load dtype, not with the weights.
    for key in ("transformers_version", "torch_dtype", "dtype", "_name_or_path", "attn_implementation"):
        cfg.pop(key, None)
    emb = model.get_input_embeddings().weight
    probe = emb[: min(4, emb.shape[0]), : min(8, emb.shape[1])].float().flatten().tolist()
    payload = json.dumps({"config": cfg, "probe": [round(x, 4) for x in probe]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class WeakFingerprintWarning(UserWarning):
    """An artifact recorded only the old config-and-probe target fingerprint: matched, but weakly."""


def target_fingerprints(name_or_path: str, model: nn.Module) -> dict[str, str]:
    """What every artifact records about its target: `target_fingerprint`, the hash of its weights
    (`weights:...`, data/target_weights.py; the probe when no weight files can be found) and
    `target_probe_fingerprint`, the old one, so artifacts made before the weights hash can still be checked."""
    probe = model_fingerprint(model)
    return {
        "target_fingerprint": weights_fingerprint(name_or_path) or probe,
        "target_probe_fingerprint": probe,
    }


def is_weights_fingerprint(fp: str | None) -> bool:
    return bool(fp) and str(fp).startswith(WEIGHTS_PREFIX)


def target_mismatch(recorded: str | None, current: dict[str, str]) -> tuple[str, str] | None:
    """(recorded, current) fingerprints when a recorded target fingerprint names another target than
    `current` (a `target_fingerprints` dict), else None. The one comparison behind every target check
    (exports, caches, eval, resume): a target at any path whose fingerprint matches is the same target. An old
    recorded fingerprint (no `weights:` prefix) is compared with the current probe and, when it matches,
    warned about as weaker."""
    if not recorded:
        return None
    have = current.get("target_fingerprint")
    if not is_weights_fingerprint(recorded):
        have = current.get("target_probe_fingerprint") or have
        if recorded == have:
            warnings.warn(
                f"target fingerprint {recorded} is the old config-and-probe kind (32 embedding values), which a "
                "fine-tune that leaves those rows alone also matches; re-export or rebuild the artifact to "
                f"record the weights hash ({current.get('target_fingerprint')})",
                WeakFingerprintWarning,
                stacklevel=3,
            )
            return None
    if not have or recorded == have:
        return None
    return recorded, have


def check_target(
    what: str, recorded: dict, current: dict[str, str], error: type[ValueError] = ValueError
) -> None:
    """Refuse an artifact whose recorded target (`recorded`: its meta/manifest, with `target` and
    `target_fingerprint`) is not the current one, naming both paths and fingerprints."""
    bad = target_mismatch(recorded.get("target_fingerprint"), current)
    if bad:
        raise error(
            f"{what} was built for target {recorded.get('target')} ({bad[0]}), but this target "
            f"{current.get('target')} is {bad[1]}: a target is known by its weights, not its path"
        )


_IDENTITY = re.compile(r"^(?P<path>.*) \((?P<fps>[^()]*)\)$")


def target_identity(fingerprint: dict[str, str]) -> str:
    """The resume identity of a target: 'PATH (weights:... | probe ...)'."""
    fp, probe = fingerprint.get("target_fingerprint"), fingerprint.get("target_probe_fingerprint")
    return (
        f"{fingerprint.get('target')} ({fp} | probe {probe})"
        if probe
        else f"{fingerprint.get('target')} ({fp})"
    )


def same_target_identity(saved: str, current: str) -> bool:
    """Resume's comparison of two `target_identity` strings: equal fingerprints, whatever the paths. A
    checkpoint from before the weights hash ('PATH (probe)') is compared with the current probe."""
    a, b = _IDENTITY.match(saved or ""), _IDENTITY.match(current or "")
    if not a or not b:
        return saved == current
    fps = [f.strip() for f in b["fps"].split("|")]
    now = {"target": b["path"], "target_fingerprint": fps[0]}
    if len(fps) > 1:
        now["target_probe_fingerprint"] = fps[1].removeprefix("probe ").strip()
    return target_mismatch(a["fps"].split("|")[0].strip(), now) is None


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
