"""Chain speculative decoding at temperature 0 (batch size 1), and the plain greedy baseline it must equal.

Both keep a KV cache on the target (transformers' DynamicCache); the draft keeps its own croppable KVCache.
Draft position t reads (embedding of token t+1, target feature f_t) and predicts f_{t+1}, whose LM-head
argmax is the token at t+2. After every verification both caches hold exactly the positions whose inputs
the target has verified, so no position computed from a guessed feature survives into the next step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from train.modeling.target import FrozenTarget

# (drafted tokens (k,), target argmax after [last token, drafted] (k+1,)) -> number of drafted tokens kept.
Verifier = Callable[[torch.Tensor, torch.Tensor], int]


def greedy_verifier(drafted: torch.Tensor, target_argmax: torch.Tensor) -> int:
    """Longest prefix of the draft on which the target's own argmax agrees."""
    agree = (drafted == target_argmax[: drafted.numel()]).long()
    return int(agree.cumprod(0).sum().item())


@dataclass
class Decoded:
    """What one decode of one prompt produced, and what it cost (prefill excluded from decode_time)."""

    tokens: list[int] = field(default_factory=list)  # new tokens; tokens[0] comes from the prefill forward
    accepted: list[int] = field(default_factory=list)  # per verification forward: drafted tokens kept
    drafted: list[int] = field(default_factory=list)  # per verification forward: tokens the draft proposed
    emitted: list[int] = field(default_factory=list)  # per verification forward: tokens output (after stops)
    margins: list[float] = field(default_factory=list)  # greedy only: top-1 minus top-2 logit per token
    draft_forwards: int = 0
    prefill_time: float = 0.0
    decode_time: float = 0.0  # from the end of the prefill to the last token
    draft_time: float = 0.0  # draft forwards + their LM-head argmax
    verify_time: float = 0.0  # target verification forwards (spec) or decode forwards (greedy)
    stop: str = ""  # "eos" or "length"

    @property
    def target_forwards(self) -> int:
        """Target forwards after the prefill: one per verification (spec) or per token (greedy)."""
        return len(self.emitted)


class _Clock:
    """Wall-clock seconds; on CUDA it waits for queued kernels so a span measures the work, not the launch."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def eos_token_ids(target: FrozenTarget) -> set[int]:
    """Every id that ends a generation: generation_config's (int or list) plus the tokenizer's eos."""
    ids: set[int] = set()
    gen = getattr(target.model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), target.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Iterable):
            ids.update(int(v) for v in value)
    return ids


def crop_target_cache(cache, length: int) -> None:
    """Keep the first `length` positions. transformers 5's DynamicCache.crop(n) takes MINUS the number of
    tokens to remove and raises on a positive n (4.x read a positive n as the length to keep)."""
    extra = cache.get_seq_length() - length
    if extra < 0:
        raise ValueError(f"cannot crop a target cache of {cache.get_seq_length()} positions to {length}")
    if extra > 0:
        cache.crop(-extra)


def _append(out: Decoded, new: list[int], eos: set[int], max_new_tokens: int) -> int:
    """Append as greedy would have emitted them: stop after the first eos or at max_new_tokens."""
    added = 0
    for tok in new:
        out.tokens.append(tok)
        added += 1
        if tok in eos:
            out.stop = "eos"
            break
        if len(out.tokens) >= max_new_tokens:
            out.stop = "length"
            break
    return added


def _target_forward(model: nn.Module, ids: torch.Tensor, cache=None):
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, output_hidden_states=True)
    # hidden_states[-1] is after the final norm: the same feature FrozenTarget.features hands to training.
    return out.hidden_states[-1], out.logits, out.past_key_values


@torch.inference_mode()
def greedy_decode(target: FrozenTarget, prompt_ids: list[int], max_new_tokens: int, eos: set[int]) -> Decoded:
    """The reference: one target forward per token with a KV cache."""
    model, clock = target.model, _Clock(target.device)
    out = Decoded()
    t0 = clock()
    res = model(input_ids=torch.tensor([prompt_ids], device=target.device), use_cache=True)
    cache, logits = res.past_key_values, res.logits[0, -1]
    t1 = clock()
    out.prefill_time = t1 - t0
    while True:
        top2 = logits.float().topk(2)
        out.margins.append(float(top2.values[0] - top2.values[1]))
        tok = int(top2.indices[0])
        if out.tokens:  # tokens[0] is the prefill's; every later token costs one decode forward
            out.emitted.append(1)
        _append(out, [tok], eos, max_new_tokens)
        if out.stop:
            break
        res = model(
            input_ids=torch.tensor([[tok]], device=target.device), past_key_values=cache, use_cache=True
        )
        cache, logits = res.past_key_values, res.logits[0, -1]
    out.decode_time = clock() - t1
    out.verify_time = out.decode_time
    return out


@torch.inference_mode()
def speculative_decode(
    target: FrozenTarget,
    head: nn.Module,
    prompt_ids: list[int],
    draft_length: int,
    max_new_tokens: int,
    eos: set[int],
    verifier: Verifier = greedy_verifier,
) -> Decoded:
    """EAGLE-style chain drafting; the output equals greedy_decode's whenever the verifier is correct."""
    model, dev, clock = target.model, target.device, _Clock(target.device)
    out = Decoded()
    t0 = clock()
    feats, logits, cache = _target_forward(model, torch.tensor([prompt_ids], device=dev))
    t1 = clock()
    out.prefill_time = t1 - t0
    _append(out, [int(logits[0, -1].argmax())], eos, max_new_tokens)
    dcache = head.new_cache()
    # Real (next token, feature) pairs the draft has not read yet: the whole prompt at first.
    pending = prompt_ids[1:] + out.tokens[-1:]
    while not out.stop:
        # Draft fewer than k near max_new_tokens: tokens past the limit would be thrown away anyway.
        k = min(draft_length, max_new_tokens - len(out.tokens) - 1)
        td = clock()
        drafted: list[int] = []
        if k > 0:
            pred = head(target.embed(torch.tensor([pending], device=dev)), feats, cache=dcache)[:, -1:]
            real_len = dcache.length
            for j in range(k):
                drafted.append(int(head.logits(pred, target.lm_head)[0, -1].argmax()))
                if j + 1 < k:  # the predicted feature stands in for the target's in the next draft step
                    pred = head(target.embed(torch.tensor([[drafted[-1]]], device=dev)), pred, cache=dcache)
            out.draft_forwards += k
            dcache.crop(real_len)
        tv = clock()
        cached = cache.get_seq_length()
        verify_ids = torch.tensor([out.tokens[-1:] + drafted], device=dev)
        hidden, logits, cache = _target_forward(model, verify_ids, cache)
        target_argmax = logits[0].argmax(-1)
        n_ok = verifier(torch.tensor(drafted, dtype=torch.long, device=dev), target_argmax)
        if not 0 <= n_ok <= k:
            raise ValueError(f"verifier kept {n_ok} of {k} drafted tokens")
        new = drafted[:n_ok] + [int(target_argmax[n_ok])]
        # Keep the last token and the accepted drafts; the bonus token is fed by the next verification.
        crop_target_cache(cache, cached + n_ok + 1)
        out.verify_time += clock() - tv
        out.draft_time += tv - td
        out.accepted.append(n_ok)
        out.drafted.append(k)
        out.emitted.append(_append(out, new, eos, max_new_tokens))
        pending, feats = new, hidden[:, : n_ok + 1]
    out.decode_time = clock() - t1
    return out
