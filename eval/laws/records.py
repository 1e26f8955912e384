"""Results records: one per sweep point, gathered from what training and eval already write (the export's
meta and resolved config.yaml, each eval's results.json), appended to one table (results.jsonl + .csv).

Training FLOPs (the record's `flops_formula`): 6 * P_draft * T * ttt_steps for the draft's forward and
backward over T target tokens, unrolled ttt_steps times (training-time test), plus 2 * P_target * T for the
frozen target's forward that produces the features and logits. Attention's sequence-length term is left out
(small at these widths), as in the usual 6ND accounting.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from safetensors import safe_open

from eval.compare import trainable_params

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
FLOPS_FORMULA = "6 * trainable_params * tokens_seen * ttt_steps + 2 * target_params * tokens_seen"
# *_ci95: the eval's 95 % bootstrap interval [lo, hi] of the number beside it (eval/metrics.py).
METRIC_KEYS = ("tau", "tau_ci95", "acceptance_rate", "speedup", "speedup_ci95", "speedup_cost_model",
               "spec_tokens_per_s", "baseline_tokens_per_s", "draft_ms", "verify_ms", "baseline_step_ms")  # fmt: skip
# What a complete record holds; a record missing any of these is rebuilt, never appended.
REQUIRED = ("point_id", "sweep", "axis", "draft", "depth", "batch_size", "config_fingerprint",
            "target_tokens", "tokens_seen", "trainable_params", "target_params", "train_flops",
            "train_seconds", "eval_seconds", "results")  # fmt: skip


def count_params(folder: Path) -> int:
    """Parameters stored in a model folder's safetensors files (shapes only; nothing is loaded)."""
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                shape = tuple(st.get_slice(k).get_shape())
                total += _numel(shape)
    return total


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def eval_metrics(results_json: Path, batch_size: int) -> dict[str, Any]:
    """The `all`-prompts metrics of one eval run at one batch size: the keys above and acceptance_at_i."""
    data = json.loads(Path(results_json).read_text())
    row = data["by_batch_size"][str(batch_size)]["all"]
    keep = {k: row.get(k) for k in METRIC_KEYS}
    keep.update({k: v for k, v in row.items() if k.startswith("acceptance_at_")})
    return keep


def build_record(point: dict[str, Any], export: Path, evals: dict[str, Path], eval_seconds: float) -> dict:
    """`point`: the point's identity (point_id, sweep, axis, target, draft, depth, target_tokens,
    batch_size); `evals`: {"t0/chain": results.json, ...}."""
    meta = json.loads((export / "config.json").read_text())["meta"]
    run_cfg = OmegaConf.load(export.parent / "config.yaml")
    ttt = int(OmegaConf.select(run_cfg, "draft.ttt_steps", default=1) or 1)
    p_draft = trainable_params(export)
    p_target = count_params(Path(meta["target"]))
    tokens = int(meta["tokens_seen"])
    return {
        **point,
        "config_fingerprint": meta.get("config_fingerprint"),
        "target_fingerprint": {
            k: v for k, v in meta.items() if k.endswith("fingerprint") and k != "config_fingerprint"
        },
        "tokens_seen": tokens,
        "trainable_params": p_draft,
        "target_params": p_target,
        "ttt_steps": ttt,
        "train_flops": 6 * p_draft * tokens * ttt + 2 * p_target * tokens,
        "flops_formula": FLOPS_FORMULA,
        "train_seconds": meta.get("train_seconds"),
        "eval_seconds": round(eval_seconds, 1),
        "results": {key: eval_metrics(path, point["batch_size"]) for key, path in evals.items()},
    }


def missing_fields(record: dict[str, Any]) -> list[str]:
    missing = [k for k in REQUIRED if record.get(k) is None]
    for key, row in (record.get("results") or {}).items():
        if row.get("tau") is None:
            missing.append(f"results.{key}.tau")
    return missing


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: nested results become columns "t0/tree/tau" (an interval: JSON text "[lo, hi]"); dicts
    elsewhere become JSON text."""
    flat: dict[str, Any] = {}
    for k, v in record.items():
        if k == "results":
            flat.update(
                {
                    f"{key}/{m}": json.dumps(x) if isinstance(x, list) else x
                    for key, row in v.items()
                    for m, x in row.items()
                }
            )
        else:
            flat[k] = json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
    return flat


def read_table(root: Path) -> list[dict[str, Any]]:
    path = Path(root) / RESULTS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_record(root: Path, record: dict[str, Any]) -> bool:
    """Append unless a row with this point_id is there (a resumed sweep re-offers finished points); then
    rewrite the CSV from the JSONL. Locked: parallel launchers (SLURM arrays) finish points concurrently."""
    if missing := missing_fields(record):
        raise ValueError(f"record {record.get('point_id')}: incomplete, missing {missing}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = read_table(root)
        if any(r["point_id"] == record["point_id"] for r in rows):
            return False
        with open(root / RESULTS_JSONL, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        write_csv(root, [*rows, record])
    return True


def write_csv(root: Path, rows: list[dict[str, Any]]) -> Path:
    flat = [flatten(r) for r in rows]
    cols: list[str] = []
    for r in flat:
        cols += [c for c in r if c not in cols]
    path = Path(root) / RESULTS_CSV
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(flat)
    os.replace(tmp, path)
    return path
