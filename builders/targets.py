"""Train the two tiny target models shipped for CPU tests and demos (plain torch loop, fp32, saved in bf16).

They only have to be real enough that a draft trained against them sees a peaked, learnable distribution:
a few million parameters trained for ~1k steps on the Python docs plus chat dialogues in ChatML.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from builders.tokenizer import EOS, IM_END, MODEL_MAX_LENGTH, save_tokenizer


@dataclass
class TrainSettings:
    steps: int = 1200
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 60
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1234
    # Dialogues are ~5% of the tokens; repeating them makes ChatML turns (and stopping at <|im_end|>)
    # a sizeable share of training without another data source.
    dialogue_repeats: int = 4


def make_config(name: str, tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Configs stay attention-implementation agnostic: loaders pick sdpa/eager/flash themselves."""
    common = dict(
        vocab_size=len(tok),
        hidden_size=256,
        num_attention_heads=4,
        head_dim=64,
        max_position_embeddings=MODEL_MAX_LENGTH,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids(EOS),
        pad_token_id=tok.pad_token_id,
    )
    if name == "tiny-llama":
        return LlamaConfig(num_hidden_layers=4, num_key_value_heads=4, intermediate_size=688, **common)
    if name == "deep-llama":
        # tiny-llama's width at 16 layers: a decode step ~4x tiny-llama's against the same one-layer draft head,
        # as a real target is deep relative to its head (the main job's speed-up is measured on it).
        return LlamaConfig(num_hidden_layers=16, num_key_value_heads=4, intermediate_size=688, **common)
    if name == "tiny-qwen2":
        return Qwen2Config(num_hidden_layers=3, num_key_value_heads=2, intermediate_size=640, **common)
    raise ValueError(f"unknown target {name!r}; expected tiny-llama, deep-llama or tiny-qwen2")


def token_stream(
    tok: PreTrainedTokenizerFast, docs: list[dict], dialogues: list[dict], repeats: int, seed: int
) -> torch.Tensor:
    """One long token stream: shuffled docs and chat-rendered dialogues, each closed by <|endoftext|>."""
    eos = tok.convert_tokens_to_ids(EOS)
    # verbose=False: docs are longer than model_max_length on purpose; they are cut into windows below.
    pieces: list[list[int]] = [tok(d["text"], verbose=False)["input_ids"] for d in docs]
    chats = [tok.apply_chat_template(d["messages"], tokenize=True, return_dict=False) for d in dialogues]
    pieces += [list(ids) for ids in chats] * repeats
    random.Random(seed).shuffle(pieces)
    flat = [t for p in pieces for t in (*p, eos)]
    return torch.tensor(flat, dtype=torch.long)


def windows(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Non-overlapping (seq_len + 1)-token windows; input is [:-1], labels [1:]."""
    n = (len(stream) - 1) // seq_len
    idx = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
    return stream[idx]


def lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def perplexity(model: torch.nn.Module, wins: torch.Tensor, batch_size: int = 16) -> float:
    """exp of the token-summed CE over all windows (a ratio of totals, not a mean of per-batch means)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(wins), batch_size):
        w = wins[i : i + batch_size]
        logits = model(input_ids=w[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
    model.train()
    return math.exp(total / count)


def train_target(
    name: str,
    tok: PreTrainedTokenizerFast,
    train_stream: torch.Tensor,
    valid_windows: torch.Tensor,
    out: Path,
    s: TrainSettings,
    sources: dict[str, str],
) -> dict:
    torch.manual_seed(s.seed)
    config = make_config(name, tok)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    train_wins = windows(train_stream, s.seq_len)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # norms (and biases) are not decayed
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    gen = torch.Generator().manual_seed(s.seed)
    order = torch.randperm(len(train_wins), generator=gen)
    cursor, tokens_seen, ema = 0, 0, None
    model.train()
    start = time.time()
    bar = tqdm(range(s.steps), desc=f"train {name}", unit="step", dynamic_ncols=True)
    for step in bar:
        if cursor + s.batch_size > len(order):  # new epoch, new order
            order, cursor = torch.randperm(len(train_wins), generator=gen), 0
        batch = train_wins[order[cursor : cursor + s.batch_size]]
        cursor += s.batch_size
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        tokens_seen += batch[:, 1:].numel()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr_at(step, s):.2e}")
    seconds = time.time() - start
    val_ppl = perplexity(model, valid_windows)
    tqdm.write(f"{name}: {n_params:,} params, train loss {ema:.3f}, valid ppl {val_ppl:.2f}, {seconds:.0f}s")
    _save(model, tok, out)
    saved_ppl = saved_perplexity(out, valid_windows)
    info = {
        "name": name,
        "architecture": type(model).__name__,
        "model_type": config.model_type,
        "parameters": n_params,
        "steps": s.steps,
        "tokens_seen": tokens_seen,
        "train_stream_tokens": len(train_stream),
        "final_train_loss_ema": round(ema or float("nan"), 4),
        "valid_perplexity_pydocs": round(val_ppl, 3),  # fp32 weights at the end of training
        "valid_perplexity_pydocs_saved_bf16": round(saved_ppl, 3),  # what a loader of this folder gets
        "valid_tokens_pydocs": int(valid_windows[:, 1:].numel()),
        "train_seconds": round(seconds, 1),
        "settings": asdict(s),
        "torch_threads": torch.get_num_threads(),
        "stored_dtype": "bfloat16",
        "sources": sources,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }  # fmt: skip
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def saved_perplexity(out: Path, valid_windows: torch.Tensor) -> float:
    """Perplexity of the saved (bf16) weights, loaded back and upcast the way users load them."""
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    return perplexity(model, valid_windows)


def _save(model: torch.nn.Module, tok: PreTrainedTokenizerFast, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Stop at the end of an assistant turn as well as at the end of a document.
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(EOS)],
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    # bf16 halves the shipped size; loaders upcast with dtype=torch.float32 when they want fp32.
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    save_tokenizer(tok, out)
