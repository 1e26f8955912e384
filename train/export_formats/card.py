"""The README card every export writes: what the draft is for, how it was trained, how well it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "README.md"
# The card's vLLM lines are run by tests/test_vllm_engine.py exactly as printed: keep them one runnable line.
VLLM_OFFLINE_NOTE = (
    "A quick offline check that the export loads and drafts, same settings (eager mode: no graph capture; "
    "tests run this line as printed, in vLLM's environment):"
)


def vllm_commands(
    target_path: str, out: Path, method: str, steps: int, extra: dict[str, Any] | None = None
) -> list[str]:
    """The vLLM serve command and an offline one-liner with the same speculative config. "method" is always
    written: without it vLLM picks draft_model for any folder whose path lacks "eagle3" and crashes.
    extra: further speculative-config keys the algorithm is served with (SPEC.serve_options)."""
    config = {"method": method, "model": str(out), "num_speculative_tokens": steps, **(extra or {})}
    spec = json.dumps(config)
    # The offline line is Python, where JSON's true/false are not names: the same dict as a Python literal.
    literal = "{" + ", ".join(f"{json.dumps(k)}: {py_value(v)}" for k, v in config.items()) + "}"
    target = str(Path(target_path).resolve())
    return [
        "```bash",
        f"vllm serve {target} --speculative-config '{spec}'",
        "```",
        VLLM_OFFLINE_NOTE,
        "```bash",
        "python -c 'from vllm import LLM, SamplingParams; "
        f'llm = LLM(model="{target}", max_model_len=512, enforce_eager=True, speculative_config={literal}); '
        'print(llm.generate(["Hello"], SamplingParams(max_tokens=8))[0].outputs[0].text)\'',
        "```",
    ]


def py_value(v: Any) -> str:
    """A JSON scalar as Python source: booleans and null by their Python names, the rest as JSON writes them
    (double-quoted strings, which the card's single-quoted shell line keeps intact)."""
    return repr(v) if v is None or isinstance(v, bool) else json.dumps(v)


def find_tau(draft_dir: Path | None, meta: dict) -> tuple[float | None, str]:
    """tau from the export's own meta, else from the newest eval results.json beside or under it."""
    for key in ("tau", "eval_tau"):
        if isinstance(meta.get(key), (int, float)):
            return float(meta[key]), "export meta"
    if isinstance(meta.get("eval"), dict) and isinstance(meta["eval"].get("tau"), (int, float)):
        return float(meta["eval"]["tau"]), str(meta["eval"].get("source", "export meta"))
    if draft_dir is None:
        return None, ""
    candidates = [draft_dir / "results.json", *draft_dir.parent.glob("*/results.json")]
    candidates += list(draft_dir.parent.glob("results.json"))
    for path in sorted((p for p in candidates if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            tau = json.loads(path.read_text())["metrics"]["all"]["tau"]
        except (KeyError, TypeError, ValueError):
            continue  # not an eval results file (eval/report.py writes metrics.all.tau)
        if isinstance(tau, (int, float)):
            return float(tau), str(path)
    return None, ""


def write_card(
    out: Path,
    fmt: str,
    meta: dict,
    target_path: str,
    tokenizer_fp: str,
    source: Path | None,
    notes: list[str],
) -> Path:
    tau, tau_src = find_tau(source, meta)
    rows: list[tuple[str, Any]] = [
        ("format", fmt),
        ("target", target_path or meta.get("target", "unknown")),
        ("target fingerprint", meta.get("target_fingerprint", "unknown")),
        ("tokenizer fingerprint", tokenizer_fp or meta.get("tokenizer_fingerprint", "unknown")),
        ("recipe / stage", meta.get("recipe") or meta.get("stage") or "unknown"),
        ("steps", meta.get("steps", "unknown")),
        ("tokens seen", meta.get("tokens_seen", "unknown")),
        (
            "tau (tokens per target forward, bonus counted)",
            f"{tau:.3f} ({tau_src})" if tau is not None else "not measured",
        ),
        ("exported from", str(source) if source else "unknown"),
    ]
    lines = [f"# Draft model ({fmt})", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if notes:
        lines += ["", "## How to load", "", *notes]
    path = out / CARD
    path.write_text("\n".join(lines) + "\n")
    return path
