"""`python -m data regenerate`: answer each prompt with the frozen target, for self-distillation data.

Each input conversation is cut after its last user turn, the target generates the assistant turn (batched,
left-padded), and the conversation is written back in the input's format (ShareGPT stays ShareGPT) with
an `origin` field naming the source line. Output goes to `<out>.partial`, appended batch by batch and
flushed; a rerun skips the origins already there (a torn last line is dropped), and the file is renamed to
`<out>` only when every prompt is done, so a reader never mistakes a partial file for a finished one.
Sampling is seeded per batch from (seed, position of its first prompt), so a resumed run writes what an
uninterrupted run with the same batch size would have.

backend=vllm generates the same batches with vLLM in its own environment (data/vllm_generate.py, run with
the python named by vllm_python or $DRAFTFORGE_VLLM_PYTHON; docs/serving.md "Serving engines (vLLM)"): same prompts
(the target's chat template, encoded here), same stop tokens, same output format and resume behaviour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from data.chat import encode_prompt, load_chat_template
from data.formats import RecordError, check_conversation, detect_format, record_messages, to_format
from data.sources import SourceSpec, iter_records
from data.target_io import eos_token_ids, load_target
from data.validate import Issue, Report, check_report

BACKENDS = ("hf", "vllm")
VLLM_ENV_VAR = "DRAFTFORGE_VLLM_PYTHON"
VLLM_WORKER = Path(__file__).with_name("vllm_generate.py")
VLLM_MARK = "DRAFTFORGE_BATCH "  # data/vllm_generate.py marks its result lines with this


@dataclass
class RegenJob:
    target: str
    source: SourceSpec
    out: str  # output JSONL path
    format: str = "auto"  # input format: auto | sharegpt | messages
    batch_size: int = 16
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    limit: int | None = None  # first N prompts only
    dtype: str = "float32"
    device: str = "auto"
    chat_template: str | None = None
    validation: str = "strict"
    max_bad_fraction: float = 0.01
    progress: bool = True
    backend: str = "hf"  # hf = transformers generate; vllm = vLLM in its own environment
    vllm_python: str = ""  # backend=vllm: that environment's python; "" = $DRAFTFORGE_VLLM_PYTHON
    tokenizer: str | None = None  # target.tokenizer: a tokenizer folder or tokenizer.json (None = target's)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: expected one of {BACKENDS}")


@dataclass
class Prompt:
    where: str
    fmt: str
    record: dict
    messages: list[dict[str, str]]


def read_prompts(job: RegenJob) -> list[Prompt]:
    report, prompts = Report(), []
    for rec in iter_records(job.source):
        if job.limit is not None and len(prompts) >= job.limit:
            break
        report.records += 1
        try:
            if rec.error is not None:
                raise RecordError(rec.error)
            assert rec.data is not None
            fmt = job.format if job.format != "auto" else detect_format(rec.data, job.source.text_field)
            if fmt == "text":
                raise RecordError("a raw-text record: regeneration needs conversations")
            messages = record_messages(rec.data, fmt)
            check_conversation(messages, need_assistant=False)
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            prompts.append(Prompt(rec.where, fmt, rec.data, messages[: last_user + 1]))
        except RecordError as err:
            report.issues.append(Issue(rec.where, str(err)))
    report.format = prompts[0].fmt if prompts else "?"
    check_report(report, job.validation, job.max_bad_fraction, "prompts")
    return prompts


def _resume(partial: Path) -> set[str]:
    """Origins already answered; cuts a torn final line so appends start on a clean line."""
    if not partial.is_file():
        return set()
    data = partial.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    done = set()
    for line in keep.splitlines():
        done.add(json.loads(line)["origin"])
    if len(keep) != len(data):
        partial.write_bytes(keep)
    return done


def run_regenerate(job: RegenJob) -> dict[str, float]:
    out, partial = Path(job.out), Path(job.out + ".partial")
    model, tok = load_target(job.target, job.dtype, job.device, tokenizer=job.tokenizer)
    load_chat_template(tok, job.chat_template)
    prompts = read_prompts(job)
    done = _resume(partial)
    todo = [(pos, p) for pos, p in enumerate(prompts) if p.where not in done]
    stop_ids = eos_token_ids(model, tok)  # the same stop set eval decodes with
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(stop_ids)
    device = next(model.parameters()).device
    partial.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=len(prompts), initial=len(prompts) - len(todo), desc="regenerate", disable=not job.progress
    )
    batches = [todo[b : b + job.batch_size] for b in range(0, len(todo), job.batch_size)]
    encoded = [[encode_prompt(tok, p.messages) for _, p in batch] for batch in batches]
    seeds = [job.seed * 1_000_003 + batch[0][0] for batch in batches]
    if job.backend == "vllm":
        results = _vllm_batches(job, encoded, seeds, sorted(stop_ids))
    else:
        results = _hf_batches(job, model, encoded, seeds, pad, sorted(stop_ids), device)
    new_tokens, seconds = 0, 0.0
    with open(partial, "a", encoding="utf-8") as f:
        for batch, (gen, batch_s) in zip(batches, results, strict=True):
            seconds += batch_s
            lines = []
            for (_, p), row in zip(batch, gen, strict=True):
                cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
                new_tokens += cut + (cut < len(row))  # the stop token was generated too
                reply = tok.decode(row[:cut], skip_special_tokens=True)
                messages = [*p.messages, {"role": "assistant", "content": reply}]
                rec = {k: v for k, v in p.record.items() if k not in ("messages", "conversations")}
                lines.append(json.dumps({**rec, **to_format(messages, p.fmt), "origin": p.where}) + "\n")
            f.write("".join(lines))  # one write per batch: a kill tears at most the last line
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(batch))
    bar.close()
    os.replace(partial, out)
    # seconds: generation only (both backends), not model loading or vLLM's engine build
    return {"prompts": len(prompts), "generated": len(todo), "new_tokens": new_tokens, "seconds": seconds,
            "tokens_per_s": new_tokens / max(seconds, 1e-9), "backend": job.backend}  # fmt: skip


def _hf_batches(
    job: RegenJob, model, encoded: list[list[list[int]]], seeds: list[int], pad: int, stop: list[int], device
) -> Iterator[tuple[list[list[int]], float]]:
    for enc, seed in zip(encoded, seeds, strict=True):
        width = max(map(len, enc))
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc], device=device)
        attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=device)
        torch.manual_seed(seed)
        sample = job.temperature > 0
        t0 = time.perf_counter()
        # generate applies TemperatureLogitsWarper + TopPLogitsWarper: train.decoding.sampling builds the same pair.
        rows = model.generate(
            input_ids=ids,
            attention_mask=attn,
            max_new_tokens=job.max_new_tokens,
            do_sample=sample,
            temperature=job.temperature if sample else None,
            top_p=job.top_p if sample else None,
            top_k=None,
            pad_token_id=pad,
            eos_token_id=stop,
        )[:, width:].tolist()
        yield rows, time.perf_counter() - t0


def _vllm_batches(
    job: RegenJob, encoded: list[list[list[int]]], seeds: list[int], stop: list[int]
) -> Iterator[tuple[list[list[int]], float]]:
    """One vLLM process for the whole run; it prints each batch's outputs as soon as they are done."""
    python = job.vllm_python or os.environ.get(VLLM_ENV_VAR, "")
    if not python or not Path(python).is_file():
        raise RuntimeError(f"--backend vllm: no vLLM python ({VLLM_ENV_VAR} or vllm_python): {python!r}")
    longest = max((len(e) for enc in encoded for e in enc), default=0)
    spec = {"target": str(Path(job.target).resolve()), "dtype": job.dtype,
            "max_model_len": longest + job.max_new_tokens, "max_new_tokens": job.max_new_tokens,
            "temperature": job.temperature, "top_p": job.top_p, "stop_token_ids": stop,
            "batches": [{"prompts": enc, "seed": seed} for enc, seed in zip(encoded, seeds, strict=True)]}  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
           "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0")}  # fmt: skip
    env.pop("PYTHONPATH", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(spec, f)
        f.flush()
        cmd = [python, "-I", str(VLLM_WORKER), f.name]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, stderr=sys.stderr) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(VLLM_MARK):
                    done = json.loads(line[len(VLLM_MARK) :])
                    yield done["outputs"], done["seconds"]
        if proc.returncode != 0:
            raise RuntimeError(f"{VLLM_WORKER.name} exited {proc.returncode} (its stderr is above)")
