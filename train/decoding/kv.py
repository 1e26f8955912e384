"""Per-row KV-cache bookkeeping for batched, ragged speculative decoding.

Every row of a batch accepts a different number of tokens per step, but a KV cache tensor has one length for
all rows. Instead of re-padding the cache every step, a cache *slot* is decoupled from a *position*: `Slots`
records, per row, which slots hold a real (verified) position, and every forward gets an explicit 4D mask
(keys = valid slots + the new block's own structure) and explicit position ids (the row's count of valid
slots + depth). A slot a row rejected, or the padding of a shorter row, simply stays masked out forever.

The same bookkeeping serves the target's transformers `DynamicCache` and the draft heads' own `KVCache`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

KVFn = Callable[[torch.Tensor], torch.Tensor]


def _map_kv(cache, fn: KVFn) -> None:
    """Apply fn to every key and value tensor, shape (B, heads, S, head_dim), of either cache type."""
    if hasattr(cache, "layers"):  # transformers >= 4.56 Cache: one object per layer
        for layer in cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys, layer.values = fn(layer.keys), fn(layer.values)
        return
    for i, (k, v) in enumerate(zip(cache.keys, cache.values, strict=True)):  # train.modeling KVCache
        if k is not None and v is not None:
            cache.keys[i], cache.values[i] = fn(k), fn(v)


def cache_length(cache) -> int:
    if hasattr(cache, "get_seq_length"):
        return cache.get_seq_length()
    return cache.length


def _is_hf(cache) -> bool:
    return hasattr(cache, "batch_select_indices")  # a transformers Cache (DynamicCache)


def truncate(cache, length: int) -> None:
    """Keep the first `length` slots (views, no copy). `DynamicCache.crop(-n)` drops the last n slots in every
    transformers 5 release; a positive n is "keep n" before 5.2x and refused after, and `crop(0)` empties the
    cache in 5.0 but is a no-op later, so only a strictly negative n is ever passed
    (tests/test_eval_kv_hf_api.py pins this)."""
    have = cache_length(cache)
    if have < length:
        raise ValueError(f"cannot truncate a cache of {have} slots to {length}")
    if have == length:
        return
    if _is_hf(cache):
        cache.crop(length - have)
    else:
        _map_kv(cache, lambda t: t[:, :, :length])


def gather_tail(cache, start: int, index: torch.Tensor, prefix: bool = False) -> None:
    """Replace slots start.. by the per-row selection `index` (B, M) of offsets into them.

    Only the M selected slots move: they are copied in place over slots start..start+M and the cache is cut
    there (the prefix before `start` is never copied). `prefix=True` says index is 0..M-1 in every row (a
    chain accepted a prefix), which needs no copy at all."""
    m = index.shape[1]
    if not prefix:

        def fn(t: torch.Tensor) -> torch.Tensor:
            idx = index[:, None, :, None].expand(t.shape[0], t.shape[1], m, t.shape[3])
            t[:, :, start : start + m] = t[:, :, start:].gather(2, idx)  # gather copies first: no overlap
            return t

        _map_kv(cache, fn)
    truncate(cache, start + m)


def select_rows(cache, rows: torch.Tensor) -> None:
    if _is_hf(cache):
        cache.batch_select_indices(rows)
    else:
        _map_kv(cache, lambda t: t.index_select(0, rows))


class Slots:
    """Which cache slots of each row hold a verified position; the row's next position is `lengths`."""

    def __init__(self, valid: torch.Tensor) -> None:
        self.valid = valid  # (B, S) bool
        self.lengths = valid.sum(1)  # (B,) positions committed so far
        # Every slot of every row is valid: a causal block then needs no explicit mask (see `causal_or_none`).
        self.dense = valid.numel() == 0

    @classmethod
    def empty(cls, batch: int, device: torch.device) -> Slots:
        return cls(torch.zeros(batch, 0, dtype=torch.bool, device=device))

    @property
    def size(self) -> int:
        return self.valid.shape[1]

    def mask(self, block: torch.Tensor, pending: torch.Tensor | None = None) -> torch.Tensor:
        """Bool mask (B, 1, T, S [+ P] + T): each new query sees the row's valid slots, then optionally
        `pending` (B, T, P) slots appended since the last commit (e.g. expanded tree nodes), then the new
        block through `block` (B, T, T). The diagonal is forced on so a padding query never attends to
        nothing (a fully masked row would make NaNs that leak through 0 * NaN in later layers)."""
        b, t, _ = block.shape
        past = self.valid[:, None, :].expand(b, t, self.size)
        eye = torch.eye(t, dtype=torch.bool, device=block.device)
        parts = [past] + ([pending] if pending is not None else []) + [block | eye]
        return torch.cat(parts, dim=2)[:, None]

    def nodes_mask(self, visible: torch.Tensor) -> torch.Tensor:
        """Bool mask (B, 1, K, S + E + K) for K drafted nodes: each sees the row's valid slots, then through
        `visible` (B, K, E + K) its ancestors among the E nodes drafted before it and itself (the tree
        search sets the diagonal, so no query is left with nothing to attend to). One copy per level."""
        b, k, _ = visible.shape
        return torch.cat([self.valid[:, None, :].expand(b, k, self.size), visible], dim=2)[:, None]

    def append(self, valid: torch.Tensor, all_valid: bool = False) -> None:
        """Commit (B, M) new slots (in the cache already), `valid` marking the real ones (`all_valid`: the
        caller knows every entry is True, so `dense` stays known without a device sync)."""
        self.valid = torch.cat([self.valid, valid], dim=1)
        self.lengths = self.lengths + valid.sum(1)
        self.dense = self.dense and all_valid

    def truncate(self, size: int) -> None:
        self.valid = self.valid[:, :size]
        self.lengths = self.valid.sum(1)
        self.dense = self.dense or self.valid.numel() == 0

    def select_rows(self, rows: torch.Tensor) -> None:
        self.valid, self.lengths = self.valid.index_select(0, rows), self.lengths.index_select(0, rows)


def causal_block(valid: torch.Tensor) -> torch.Tensor:
    """(B, T) validity -> (B, T, T): query j sees earlier valid keys of its own block (and itself)."""
    t = valid.shape[1]
    tril = torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
    return tril[None] & valid[:, None, :]


def block_positions(slots: Slots, valid: torch.Tensor) -> torch.Tensor:
    """Positions of a causal block whose valid entries continue each row's sequence (padding repeats)."""
    v = valid.long()
    return slots.lengths[:, None] + v.cumsum(1) - v


def positions(slots: Slots, t: int) -> torch.Tensor:
    """(B, t) positions of a causal block continuing every row (all rows' slots valid)."""
    return slots.lengths[:, None] + torch.arange(t, device=slots.lengths.device)


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool -> additive float mask. transformers' eager attention *adds* the mask to the scores, so a bool
    mask would be read as +0/+1; sdpa accepts either. finfo.min instead of -inf keeps padding rows finite."""
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill_(~mask, torch.finfo(dtype).min)
