"""`python -m data regenerate`: answer each prompt with the frozen target, for self-distillation data.

Each input conversation is cut after its last user turn, the target generates the assistant turn (batched,
left-padded), and the conversation is written back in the input's format (ShareGPT stays ShareGPT) with
an `origin` field naming the source line. Output goes to `<out>.partial`, appended batch by batch and
flushed; a rerun skips the origins already there (a torn last line is dropped), and the file is renamed to
`<out>` only when every prompt is done, so a reader never mistakes a partial file for a finished one.
Sampling is seeded per batch from (seed, position of its first prompt), so a resumed run writes what an
uninterrupted run with the same batch size would have.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from data.chat import encode_prompt, load_chat_template
from data.formats import RecordError, check_conversation, detect_format, record_messages, to_format
from data.sources import SourceSpec, iter_records
from data.target_io import eos_token_ids, load_target
from data.validate import Issue, Report, check_report


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
    tokenizer: str | None = None  # target.tokenizer: a tokenizer folder or tokenizer.json (None = target's)


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
    new_tokens, t0 = 0, time.perf_counter()
    with open(partial, "a", encoding="utf-8") as f:
        for b in range(0, len(todo), job.batch_size):
            batch = todo[b : b + job.batch_size]
            enc = [encode_prompt(tok, p.messages) for _, p in batch]
            width = max(map(len, enc))
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc], device=device)
            attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=device)
            torch.manual_seed(job.seed * 1_000_003 + batch[0][0])
            sample = job.temperature > 0
            # generate applies TemperatureLogitsWarper + TopPLogitsWarper: eval.sampling builds the same pair.
            gen = model.generate(
                input_ids=ids,
                attention_mask=attn,
                max_new_tokens=job.max_new_tokens,
                do_sample=sample,
                temperature=job.temperature if sample else None,
                top_p=job.top_p if sample else None,
                top_k=None,
                pad_token_id=pad,
                eos_token_id=sorted(stop_ids),
            )[:, width:].tolist()
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
    seconds = time.perf_counter() - t0
    os.replace(partial, out)
    return {"prompts": len(prompts), "generated": len(todo), "new_tokens": new_tokens, "seconds": seconds,
            "tokens_per_s": new_tokens / max(seconds, 1e-9)}  # fmt: skip
