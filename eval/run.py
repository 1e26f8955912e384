"""`evaluate(cfg)`: decode held-out prompts greedily and speculatively, check they agree, measure, report."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn
from tqdm.auto import tqdm

from eval.config import EvalConfig
from eval.metrics import summarize
from eval.prompts import Prompt, load_prompts
from eval.report import (
    ACCEPTANCE_PNG,
    Metrics,
    format_table,
    log_results,
    plot_acceptance,
    write_outputs,
    write_results,
)
from eval.spec_decode import (
    Decoded,
    Verifier,
    eos_token_ids,
    greedy_decode,
    greedy_verifier,
    speculative_decode,
)
from train.modeling.draft.eagle import EagleHead, EagleHeadConfig
from train.modeling.draft.io import load_draft
from train.modeling.target import FrozenTarget
from train.tracking import make_logger

RANDOM_DRAFT = "random"
WARMUP_TOKENS = 4


@dataclass
class Mismatch:
    prompt_id: str
    position: int  # first index into the new tokens where speculative and greedy differ
    spec_token: int | None  # None: that output ended here
    greedy_token: int | None
    greedy_margin: float | None  # greedy's top-1 minus top-2 logit there: ~0 hints at a numerical tie

    def describe(self) -> str:
        margin = (
            ""
            if self.greedy_margin is None
            else f" (greedy's top-2 logit margin there: {self.greedy_margin:.3g})"
        )
        return (
            f"prompt {self.prompt_id}: speculative output differs from greedy at new token {self.position}: "
            f"speculative {self.spec_token}, greedy {self.greedy_token}{margin}"
        )


@dataclass
class EvalResult:
    metrics: Metrics  # {"all": {...}, "<category>": {...}}: see eval.metrics for definitions
    output_dir: Path
    files: dict[str, Path]  # results_json, results_csv, outputs_jsonl, plot, config
    records: list[dict[str, Any]]  # the outputs.jsonl rows
    mismatches: list[Mismatch] = field(default_factory=list)
    table: str = ""

    @property
    def lossless(self) -> bool:
        return not self.mismatches


class LosslessError(RuntimeError):
    """Speculative decoding changed the output: a bug in drafting, verification or cache handling."""

    def __init__(self, result: EvalResult) -> None:
        self.result = result
        first = result.mismatches[0]
        super().__init__(
            f"speculative decoding is not lossless on {len(result.mismatches)} of {len(result.records)} prompts; "
            f"first: {first.describe()}. Decoded outputs are in {result.files['outputs_jsonl']}"
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch.cuda.is_available() is False")
    return torch.device(name)


def random_head(target: FrozenTarget) -> EagleHead:
    """An untrained one-layer EAGLE head shaped like one target layer: the floor any trained draft must beat."""
    c = target.model.config
    heads = c.num_attention_heads
    rope = getattr(c, "rope_parameters", None) or {}
    return EagleHead(
        EagleHeadConfig(
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            num_heads=heads,
            num_kv_heads=getattr(c, "num_key_value_heads", None) or heads,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
            rope_theta=float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))),
            rms_norm_eps=getattr(c, "rms_norm_eps", 1e-6),
            vocab_size=target.vocab_size,
        )
    )


def load_head(draft_path: str, target: FrozenTarget) -> tuple[nn.Module, dict[str, Any]]:
    if draft_path == RANDOM_DRAFT:
        head, meta = random_head(target), {"draft": RANDOM_DRAFT}
    else:
        head, meta = load_draft(
            draft_path, target_fingerprint=target.fingerprint(), vocab_size=target.vocab_size
        )
        hidden = getattr(head.config, "hidden_size", target.hidden_size)
        if hidden != target.hidden_size:
            raise ValueError(
                f"{draft_path}: draft hidden size {hidden} != target hidden size {target.hidden_size}"
            )
        trained_on = meta.get("target_fingerprint")
        if trained_on and trained_on != target.fingerprint()["target_fingerprint"]:
            warnings.warn(
                f"{draft_path} was trained against target {meta.get('target')} ({trained_on}), not this one "
                f"({target.name_or_path}): acceptance measures transfer, not the draft as trained",
                stacklevel=2,
            )
    return head.to(device=target.device, dtype=target.dtype).eval(), meta


def first_mismatch(prompt_id: str, spec: Decoded, base: Decoded) -> Mismatch | None:
    for i in range(max(len(spec.tokens), len(base.tokens))):
        s = spec.tokens[i] if i < len(spec.tokens) else None
        g = base.tokens[i] if i < len(base.tokens) else None
        if s != g:
            margin = base.margins[i] if i < len(base.margins) else None
            return Mismatch(prompt_id, i, s, g, margin)
    return None


def decode_prompts(
    target: FrozenTarget, head: nn.Module, prompts: list[Prompt], cfg: EvalConfig, verifier: Verifier
) -> tuple[list[tuple[str, Decoded, Decoded]], list[dict[str, Any]], list[Mismatch]]:
    """Greedy then speculative on every prompt: (category, spec, greedy) per prompt, outputs.jsonl rows,
    and every prompt whose speculative output differs from greedy."""
    eos = eos_token_ids(target)
    # Warm-up (not measured): the first forwards of a process pay for allocations and kernel selection.
    warm = min(WARMUP_TOKENS, cfg.max_new_tokens)
    greedy_decode(target, prompts[0].input_ids, warm, eos)
    speculative_decode(target, head, prompts[0].input_ids, cfg.draft_length, warm, eos, verifier)

    decoded: list[tuple[str, Decoded, Decoded]] = []
    records: list[dict[str, Any]] = []
    mismatches: list[Mismatch] = []
    for prompt in tqdm(prompts, desc="eval", unit="prompt"):
        base = greedy_decode(target, prompt.input_ids, cfg.max_new_tokens, eos)
        spec = speculative_decode(
            target, head, prompt.input_ids, cfg.draft_length, cfg.max_new_tokens, eos, verifier
        )
        decoded.append((prompt.category, spec, base))
        bad = first_mismatch(prompt.id, spec, base)
        if bad:
            mismatches.append(bad)
        records.append(
            {
                "id": prompt.id,
                "category": prompt.category,
                "prompt_token_ids": prompt.input_ids,
                "output_token_ids": spec.tokens,
                "text": target.tokenizer.decode(spec.tokens),
                "accepted_lengths": spec.accepted,  # per verification forward, bonus token not included
                "drafted_lengths": spec.drafted,
                "stop": spec.stop,
                "lossless": bad is None,
                **({"greedy_token_ids": base.tokens, "first_mismatch": bad.position} if bad else {}),
            }
        )

    return decoded, records, mismatches


def evaluate(
    cfg: EvalConfig, *, target: FrozenTarget | None = None, verifier: Verifier = greedy_verifier
) -> EvalResult:
    """Run the whole evaluation; raises LosslessError (after writing every report) if any output differs.

    `target` lets a caller that already holds the frozen target (the training pipeline, tests) reuse it.
    """
    torch.manual_seed(cfg.seed)
    if cfg.cpu_threads:
        # Tiny models with several threads on a shared CPU time the thread scheduler, not the model.
        torch.set_num_threads(cfg.cpu_threads)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "eval_config.yaml"
    config_path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    target = target or cfg.target.load(resolve_device(cfg.device))
    head, draft_meta = load_head(cfg.draft_path, target)
    prompt_set = load_prompts(cfg.prompts, target.tokenizer)

    decoded, records, mismatches = decode_prompts(target, head, prompt_set.prompts, cfg, verifier)
    metrics = summarize(decoded, cfg.draft_length)
    verdict = f"NO, {len(mismatches)} prompts differ" if mismatches else "yes, every output equals greedy"
    categories = ", ".join(c for c in metrics if c != "all")
    header = {
        "target": f"{target.name_or_path} ({cfg.target.family or 'unknown family'}, {cfg.target.dtype})",
        "draft": cfg.draft_path,
        "decoding": f"chain, k={cfg.draft_length}, temperature 0, batch 1, max_new_tokens={cfg.max_new_tokens}",
        "prompts": f"{len(records)} ({categories}); left out: {prompt_set.skipped or 'none'}",
        "lossless": verdict,
        "device": str(target.device),
    }
    table = format_table(metrics, header)
    print(table, flush=True)

    info = {
        "lossless": not mismatches,
        "mismatches": [dataclasses.asdict(m) for m in mismatches],
        "prompts_left_out": prompt_set.skipped,
        "target": target.fingerprint(),
        "draft": {"path": cfg.draft_path, "meta": draft_meta},
        "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
    }
    results_json, results_csv = write_results(out_dir, metrics, info)
    outputs = write_outputs(out_dir, records)
    png = plot_acceptance(metrics, cfg.draft_length, out_dir / ACCEPTANCE_PNG)
    files = {"results_json": results_json, "results_csv": results_csv, "outputs_jsonl": outputs, "plot": png,
             "config": config_path}  # fmt: skip
    result = EvalResult(metrics, out_dir, files, records, mismatches, table)

    logger = make_logger(cfg.logger, out_dir, info["config"], is_main=True)
    try:
        log_results(logger, metrics, png, records)
    finally:
        logger.finish()
    if mismatches:
        raise LosslessError(result)
    return result
