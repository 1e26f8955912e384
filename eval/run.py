"""`evaluate(cfg)`: decode held-out prompts with the target alone and speculatively, at every batch size,
check they agree (temperature 0), measure, report."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from data.target_io import eos_token_ids, pick_device
from data.tracking import make_logger
from eval.config import EvalConfig
from eval.drafters import DraftSettings, NoDrafter, load_drafter
from eval.engine import Engine, Generation, RowResult
from eval.metrics import Metrics, summarize
from eval.prompts import Prompt, load_prompts
from eval.report import (
    OUTPUTS_JSONL,
    RESULTS_JSON,
    format_table,
    log_results,
    plot_all,
    write_outputs,
    write_results,
)
from eval.verify import TreeVerifier
from train.decoding.sampling import Sampling
from train.modeling.target import FrozenTarget

WARMUP_TOKENS = 4


@dataclass
class Mismatch:
    prompt_id: str
    batch_size: int
    position: int  # first index into the new tokens where speculative and plain decoding differ
    spec_token: int | None  # None: that output ended here
    greedy_token: int | None
    greedy_margin: float | None  # the target's top-1 minus top-2 logit there: ~0 hints at a numerical tie

    def describe(self) -> str:
        margin = (
            "" if self.greedy_margin is None else f" (top-2 logit margin there: {self.greedy_margin:.3g})"
        )
        return (
            f"prompt {self.prompt_id} (batch size {self.batch_size}): speculative output differs from greedy "
            f"at new token {self.position}: speculative {self.spec_token}, greedy {self.greedy_token}{margin}"
        )


@dataclass
class EvalResult:
    metrics: dict[str, Metrics]  # first batch size: {"all": {...}, "<category>": {...}} (eval.metrics)
    by_batch_size: dict[int, dict[str, Metrics]]
    output_dir: Path
    files: dict[str, Path]
    records: list[dict[str, Any]]  # the outputs.jsonl rows
    mismatches: list[Mismatch] = field(default_factory=list)
    table: str = ""
    # True: finished_result read this from an earlier run's files and nothing was decoded.
    read_back: bool = False

    @property
    def lossless(self) -> bool:
        return not self.mismatches


class LosslessError(RuntimeError):
    """Speculative decoding changed the output: a bug in drafting, verification or cache handling."""

    def __init__(self, result: EvalResult) -> None:
        self.result = result
        first = result.mismatches[0]
        super().__init__(
            f"speculative decoding is not lossless on {len(result.mismatches)} of {len(result.records)} "
            f"decodes; first: {first.describe()}. Decoded outputs are in {result.files['outputs_jsonl']}"
        )


def load_target(cfg: EvalConfig) -> FrozenTarget:
    # Verifying a tree (and ragged batches) needs a custom 4D mask, which flash-attention cannot take.
    attn = "sdpa" if cfg.target.attn_implementation == "auto" else cfg.target.attn_implementation
    if attn == "flash_attention_2":
        raise ValueError(
            "target.attn_implementation=flash_attention_2 cannot take tree masks: use sdpa or eager"
        )
    return dataclasses.replace(cfg.target, attn_implementation=attn).load(pick_device(cfg.device))


def first_mismatch(target: FrozenTarget, prompt: Prompt, bs: int, spec: RowResult, base: RowResult):
    for i in range(max(len(spec.tokens), len(base.tokens))):
        s = spec.tokens[i] if i < len(spec.tokens) else None
        g = base.tokens[i] if i < len(base.tokens) else None
        if s != g:
            ids = torch.tensor([prompt.input_ids + base.tokens[:i]], device=target.device)
            with torch.inference_mode():
                top2 = target.model(input_ids=ids).logits[0, -1].float().topk(2).values
            return Mismatch(prompt.id, bs, i, s, g, float(top2[0] - top2[1]))
    return None


def _record(prompt: Prompt, bs: int, spec: RowResult, tok, bad: Mismatch | None, base: RowResult) -> dict:
    return {
        "id": prompt.id,
        "category": prompt.category,
        "batch_size": bs,
        "prompt_token_ids": prompt.input_ids,
        "output_token_ids": spec.tokens,
        "text": tok.decode(spec.tokens),
        "accepted_lengths": spec.accepted,  # per verification forward, bonus token not included
        # per verification forward, tokens output (bonus counted, after eos/length cuts): tau's numerator, so
        # tau and its interval can be recomputed over any set of prompts (eval.compare pools seeds with it)
        "emitted": spec.emitted,
        "drafted_nodes": spec.drafted,
        "stop": spec.stop,
        "lossless": bad is None,
        **({"greedy_token_ids": base.tokens, "first_mismatch": bad.position} if bad else {}),
    }


def decode_all(cfg: EvalConfig, target: FrozenTarget, spec: Engine, base: Engine, prompts: list[Prompt]):
    """Every prompt at every batch size: per-batch-size metrics, outputs.jsonl rows, mismatches."""
    greedy = cfg.temperature == 0.0
    by_bs: dict[int, dict[str, Metrics]] = {}
    records, mismatches = [], []
    for bs in cfg.batch_sizes:
        gen = torch.Generator(device=target.device).manual_seed(cfg.seed + bs)
        batches = []
        chunks = [prompts[i : i + bs] for i in range(0, len(prompts), bs)]
        for chunk in tqdm(chunks, desc=f"eval batch={bs}", unit="batch", disable=not cfg.progress):
            ids = [p.input_ids for p in chunk]
            b: Generation = base.generate(ids, cfg.max_new_tokens, gen)
            s: Generation = spec.generate(ids, cfg.max_new_tokens, gen)
            batches.append(([p.category for p in chunk], s.rows, b.rows, s.stats, b.stats))
            for p, sr, br in zip(chunk, s.rows, b.rows, strict=True):
                bad = first_mismatch(target, p, bs, sr, br) if greedy else None
                if bad:
                    mismatches.append(bad)
                records.append(_record(p, bs, sr, target.tokenizer, bad, br))
        by_bs[bs] = summarize(batches, cfg.positions)
    return by_bs, records, mismatches


def finished_result(cfg: EvalConfig) -> EvalResult | None:
    """The lossless eval already written in cfg.output_dir with exactly this config of the export that is at
    cfg.draft_path now (its recorded metadata, which holds the training's creation time, unchanged), or None:
    a caller that measures many drafts (eval.compare) can resume without decoding again what it measured."""
    out_dir = Path(cfg.output_dir)
    results, outputs = out_dir / RESULTS_JSON, out_dir / OUTPUTS_JSONL
    export_config = Path(cfg.draft_path) / "config.json"
    if not (results.is_file() and outputs.is_file() and export_config.is_file()):
        return None
    if outputs.stat().st_mtime_ns < results.stat().st_mtime_ns:  # evaluate writes results.json first
        return None  # stopped between the two files: these outputs belong to an earlier eval
    stored = json.loads(results.read_text())
    config = json.loads(json.dumps(OmegaConf.to_container(OmegaConf.structured(cfg)), default=str))
    stored_meta = {k: v for k, v in stored.get("draft", {}).get("meta", {}).items() if k != "architecture"}
    export_meta = json.loads(export_config.read_text()).get("meta")
    if stored.get("config") != config or stored_meta != export_meta or not stored.get("lossless"):
        return None
    by_bs = {int(b): m for b, m in stored["by_batch_size"].items()}
    records = [json.loads(line) for line in outputs.read_text().splitlines() if line.strip()]
    files = {"results_json": results, "outputs_jsonl": outputs}
    return EvalResult(stored["metrics"], by_bs, out_dir, files, records, read_back=True)


def evaluate(
    cfg: EvalConfig, *, target: FrozenTarget | None = None, verifier: TreeVerifier | None = None
) -> EvalResult:
    """Run the whole evaluation; raises LosslessError (after writing every report) if any greedy output
    differs. `target` lets a caller that already holds the frozen target (tests, pipelines) reuse it."""
    torch.manual_seed(cfg.seed)
    if cfg.cpu_threads:
        # Tiny models with several threads on a shared CPU time the thread scheduler, not the model.
        torch.set_num_threads(cfg.cpu_threads)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "eval_config.yaml"
    config_path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    target = target or load_target(cfg)
    drafter, draft_meta = load_drafter(cfg.draft_path, target)
    prompt_set = load_prompts(cfg.prompts, target.tokenizer)
    sampling = Sampling(cfg.temperature, cfg.top_p)
    t = cfg.tree
    settings = DraftSettings(cfg.mode, cfg.draft_length, t.depth, t.topk, t.budget, sampling, t.batch_budget)
    eos = eos_token_ids(target.model, target.tokenizer)
    spec, base = Engine(target, drafter, settings, eos, verifier), Engine(target, NoDrafter(), settings, eos)
    # Warm-up (not measured): the first forwards of a process pay for allocations and kernel selection.
    warm = [prompt_set.prompts[0].input_ids]
    base.generate(warm, min(WARMUP_TOKENS, cfg.max_new_tokens))
    spec.generate(warm, min(WARMUP_TOKENS, cfg.max_new_tokens))

    by_bs, records, mismatches = decode_all(cfg, target, spec, base, prompt_set.prompts)
    metrics = by_bs[cfg.batch_sizes[0]]
    if cfg.temperature > 0:
        verdict = "by construction (speculative sampling; tested statistically), not checked per prompt"
    else:
        verdict = f"NO, {len(mismatches)} decodes differ" if mismatches else "yes, every output equals greedy"
    shape = (f"chain, k={cfg.draft_length}" if cfg.mode == "chain"
             else f"tree, depth={t.depth} topk={t.topk} budget={t.budget}")  # fmt: skip
    if t.batch_budget is not None:
        shape += f", at most {t.batch_budget} drafted tokens per target forward shared by the batch"
    header = {
        "target": f"{target.name_or_path} ({cfg.target.family or 'unknown family'}, {cfg.target.dtype})",
        "draft": f"{cfg.draft_path} ({draft_meta.get('architecture')})",
        "decoding": f"{shape}, temperature {cfg.temperature}, top_p {cfg.top_p}, max_new_tokens={cfg.max_new_tokens}",
        "batch sizes": ", ".join(map(str, cfg.batch_sizes))
        + f" (categories below: batch {cfg.batch_sizes[0]})",
        "prompts": f"{len(prompt_set.prompts)} ({', '.join(c for c in metrics if c != 'all')}); "
        f"left out: {prompt_set.skipped or 'none'}",
        "lossless": verdict,
        "device": f"{target.device}, {torch.get_num_threads()} CPU threads",
    }
    table = format_table(metrics, by_bs, header)
    print(table, flush=True)

    info = {
        "lossless": not mismatches,
        "mismatches": [dataclasses.asdict(m) for m in mismatches],
        "prompts_left_out": prompt_set.skipped,
        "target": target.fingerprint(),
        "draft": {"path": cfg.draft_path, "meta": draft_meta},
        "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
    }
    results_json, results_csv = write_results(out_dir, metrics, by_bs, info)
    outputs = write_outputs(out_dir, records)
    plots = plot_all(metrics, by_bs, cfg.positions, out_dir)
    files = {"results_json": results_json, "results_csv": results_csv, "outputs_jsonl": outputs,
             "config": config_path, **plots}  # fmt: skip
    result = EvalResult(metrics, by_bs, out_dir, files, records, mismatches, table)

    logger = make_logger(cfg.logger, out_dir, info["config"], is_main=True)
    try:
        log_results(logger, metrics, by_bs, plots, records)
    finally:
        logger.finish()
    if mismatches:
        raise LosslessError(result)
    return result
