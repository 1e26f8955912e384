"""The decoding engine: batched speculative decoding (chain or tree, greedy or sampling) with KV caches.

One step for a batch of rows: the drafter proposes a tree below each row's last token; the target reads
[last token, tree nodes] for every row in ONE forward, with a 4D mask in which each node sees the row's
verified cache and its own ancestors, and with position ids = row length + depth; verification picks a path
per row; each row's cache keeps exactly the slots of its accepted path (see `train.decoding.kv`). Rows accept
different lengths and never wait for each other; a row that stops leaves the batch.

The baseline that speculative decoding is timed and checked against is this same engine with
`NoDrafter` (one target token per forward, same masks, caches and bookkeeping).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from eval.budget import share_budget
from eval.verify import TreeVerifier
from train.decoding.drafter import CHAIN, Drafter, DraftSettings
from train.decoding.kv import Slots, additive, block_positions, causal_block, gather_tail, select_rows
from train.decoding.kv import positions as kv_positions
from train.decoding.trees import is_chain, tree_visibility
from train.modeling.target import FrozenTarget


@dataclass
class RowResult:
    """What one prompt produced, step by step (a step = one target verification forward)."""

    tokens: list[int] = field(default_factory=list)  # new tokens; tokens[0] comes from the prefill
    accepted: list[int] = field(default_factory=list)  # per step: drafted tokens kept (bonus not included)
    reached: list[int] = field(default_factory=list)  # per step: draft positions verification tested
    drafted: list[int] = field(default_factory=list)  # per step: tree nodes proposed
    emitted: list[int] = field(default_factory=list)  # per step: tokens output (after eos / length cuts)
    stop: str = ""  # "eos" or "length"

    @property
    def steps(self) -> int:
        return len(self.emitted)


@dataclass
class BatchStats:
    """Costs of one batch; seconds after the prefill are split into draft, verify (target forward) and the
    rest (verification walk, cache bookkeeping)."""

    batch_size: int
    steps: int = 0  # target forwards after the prefill (one per step for the whole batch)
    prefill_time: float = 0.0
    draft_time: float = 0.0
    verify_time: float = 0.0
    decode_time: float = 0.0


@dataclass
class Generation:
    rows: list[RowResult]
    stats: BatchStats


class _Clock:
    """Wall-clock seconds; on CUDA it waits for queued kernels so a span measures the work, not the launch."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def _append(row: RowResult, new: list[int], eos: set[int], max_new_tokens: int) -> int:
    """Append as plain decoding would have emitted them: stop after the first eos or at max_new_tokens."""
    added = 0
    for tok in new:
        if row.stop:
            break
        row.tokens.append(tok)
        added += 1
        if tok in eos:
            row.stop = "eos"
        elif len(row.tokens) >= max_new_tokens:
            row.stop = "length"
    return added


class Engine:
    def __init__(
        self,
        target: FrozenTarget,
        drafter: Drafter,
        settings: DraftSettings,
        eos: set[int],
        verifier: TreeVerifier | None = None,
    ) -> None:
        self.target, self.drafter, self.settings, self.eos = target, drafter, settings, eos
        self.verifier = verifier or TreeVerifier(settings.sampling)
        self.clock = _Clock(target.device)
        self.pad = min(eos) if eos else 0  # any real id: padded slots are masked out everywhere

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache, keep: int = 0
    ):
        """mask None = plain causal attention over every cached slot (transformers builds it, or skips it
        for one query, as in its own `generate`); keep = logits for the last `keep` positions only (0: all)."""
        layers = self.drafter.feature_layers
        out = self.target.model(
            input_ids=ids,
            attention_mask=None if mask is None else additive(mask, self.target.dtype),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            output_hidden_states=bool(layers),
            logits_to_keep=keep,
        )
        if layers:
            feats = torch.cat([out.hidden_states[i] for i in layers], -1)
        else:
            feats = out.logits.new_zeros(*ids.shape, 0)
        return out.logits, feats, out.past_key_values

    @torch.inference_mode()
    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, gen: torch.Generator | None = None
    ) -> Generation:
        dev, sampling = self.target.device, self.settings.sampling
        b = len(prompts)
        stats = BatchStats(batch_size=b)
        rows = [RowResult() for _ in prompts]
        t0 = self.clock()
        # Prefill, right-padded: every row's valid slots are a prefix, the layout observe() expects.
        lens = torch.tensor([len(p) for p in prompts], device=dev)
        ids = torch.full((b, int(lens.max())), self.pad, dtype=torch.long, device=dev)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.tensor(p, device=dev)
        valid = torch.arange(ids.shape[1], device=dev)[None] < lens[:, None]
        slots = Slots.empty(b, dev)
        same = all(len(p) == len(prompts[0]) for p in prompts)  # no padding: causal, last logits only
        logits, feats, cache = self._forward(
            ids,
            None if same else slots.mask(causal_block(valid)),
            block_positions(slots, valid),
            None,
            keep=1 if same else 0,
        )
        slots.append(valid, all_valid=same)
        last = logits[:, -1] if same else logits[torch.arange(b, device=dev), lens - 1]
        first = sampling.choose(last, gen).tolist()
        self.drafter.start(b)
        self.drafter.observe(ids, feats, valid)
        for row, tok in zip(rows, first, strict=True):
            _append(row, [tok], self.eos, max_new_tokens)
        t1 = self.clock()
        stats.prefill_time = t1 - t0
        active = list(range(b))
        while True:
            still = [j for j, i in enumerate(active) if not rows[i].stop]
            if len(still) < len(active):
                if not still:
                    break
                keep = torch.tensor(still, device=dev)
                select_rows(cache, keep)
                slots.select_rows(keep)
                self.drafter.select_rows(keep)
                active = [active[j] for j in still]
            self._step(rows, active, slots, cache, stats, max_new_tokens, gen)
        stats.decode_time = self.clock() - t1
        return Generation(rows, stats)

    def _step(self, rows, active, slots: Slots, cache, stats: BatchStats, max_new_tokens: int, gen) -> None:
        dev = self.target.device
        ta = self.clock()
        root = torch.tensor([rows[i].tokens[-1] for i in active], device=dev)
        tree = self.drafter.propose(root, self.settings, gen)
        if self.settings.batch_budget is not None:  # the rows share one cap on drafted tokens (eval.budget)
            tree = share_budget(tree, self.settings.batch_budget)  # timed with drafting: it shapes the draft
        tb = self.clock()
        block = torch.cat([root[:, None], tree.tokens], 1)
        chain = tree.size == 0 or self.settings.mode == CHAIN or is_chain(tree.parents)
        if chain and slots.dense:  # every slot valid, a causal block: no mask to build or to read
            mask, positions = None, kv_positions(slots, block.shape[1])
        else:
            depth = int(tree.depths.max()) if tree.size else 0
            mask = slots.mask(tree_visibility(tree.parents, depth))
            positions = slots.lengths[:, None] + torch.cat([torch.zeros_like(root)[:, None], tree.depths], 1)
        start = slots.size
        logits, feats, _ = self._forward(block, mask, positions, cache)
        tc = self.clock()
        walks = self.verifier(tree, logits, gen)
        # Each row keeps the root's slot and its accepted nodes' slots; shorter rows pad with masked slots.
        lens = [1 + len(w.path) for w in walks]
        width = max(lens)
        prefix = all(w.path == list(range(len(w.path))) for w in walks)  # always so for a chain
        if prefix:  # rows keep slots start.. in order: nothing moves in any cache
            keep = torch.arange(width, device=dev).expand(len(active), width)
        else:
            offs = [
                [0] + [c + 1 for c in w.path] + [0] * (width - n) for w, n in zip(walks, lens, strict=True)
            ]
            keep = torch.tensor(offs, device=dev)
        kept = torch.arange(width, device=dev)[None] < torch.tensor(lens, device=dev)[:, None]
        gather_tail(cache, start, keep, prefix=prefix)
        slots.append(kept, all_valid=min(lens) == width)
        if prefix:  # views: the kept slots are the block's first `width` entries
            self.drafter.observe(block[:, :width], feats[:, :width], kept)
        else:
            idx = keep[..., None].expand(-1, -1, feats.shape[-1])
            self.drafter.observe(block.gather(1, keep), feats.gather(1, idx), kept)
        tokens, drafted = tree.tokens.tolist(), tree.counts()
        for j, (i, w) in enumerate(zip(active, walks, strict=True)):
            row = rows[i]
            row.accepted.append(len(w.path))
            row.reached.append(w.reached)
            row.drafted.append(drafted[j])
            row.emitted.append(
                _append(row, [tokens[j][c] for c in w.path] + [w.token], self.eos, max_new_tokens)
            )
        stats.steps += 1
        stats.draft_time += tb - ta
        stats.verify_time += tc - tb
