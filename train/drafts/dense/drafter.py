"""A stand-alone dense draft: any Hugging Face causal LM that shares the target's tokenizer.

It reads token ids only (no target features) and keeps its own transformers KV cache, with the same
slot bookkeeping and 4D masks as the target, so it drafts chains and EAGLE-2 dynamic trees alike.
"""

from __future__ import annotations

import torch
from torch import nn

from data.target_io import dtype_name, load_model
from train.decoding.drafter import CHAIN, DraftSettings, DraftTree
from train.decoding.kv import Slots, additive, block_positions, causal_block, select_rows, truncate
from train.decoding.trees import draft_chain, dynamic_tree
from train.modeling.target import FrozenTarget


def load_dense(path: str, target: FrozenTarget) -> nn.Module:
    # sdpa (or eager) because drafting a tree needs a custom 4D mask, which flash-attention cannot take.
    model = load_model(path, dtype_name(target.dtype), target.device, "sdpa", field="draft_path")
    rows = model.get_output_embeddings().weight.shape[0]
    if rows != target.vocab_size:
        raise ValueError(f"{path}: dense draft vocabulary {rows} != target vocabulary {target.vocab_size}")
    return model


class DenseDrafter:
    feature_layers: tuple[int, ...] = ()

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.device = model.get_input_embeddings().weight.device
        self.start(1)

    def start(self, batch: int) -> None:
        self.cache = None
        self.slots = Slots.empty(batch, self.device)
        self.pend = torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        self.pend_valid = torch.zeros(batch, 0, dtype=torch.bool, device=self.device)
        self.root_in_cache = False

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        if self.root_in_cache:  # tokens[:, 0] is the root that propose() already ran through the draft
            tokens, valid = tokens[:, 1:], valid[:, 1:]
            self.root_in_cache = False
        self.pend = torch.cat([self.pend, tokens], 1)
        self.pend_valid = torch.cat([self.pend_valid, valid], 1)

    def _run(
        self, tokens: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor, keep: int = 0
    ) -> torch.Tensor:
        """mask None = causal over every cached slot; keep = logits of the last `keep` positions (0 = all)."""
        dtype = self.model.get_input_embeddings().weight.dtype
        out = self.model(
            input_ids=tokens,
            attention_mask=None if mask is None else additive(mask, dtype),
            position_ids=pos,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=keep,
        )
        self.cache = out.past_key_values
        return out.logits

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        toks = torch.cat([self.pend, root[:, None]], 1)
        valid = torch.cat([self.pend_valid, torch.ones_like(root, dtype=torch.bool)[:, None]], 1)
        dense = self.slots.dense and bool(valid.all())  # then the catch-up block is plainly causal
        mask = None if dense else self.slots.mask(causal_block(valid))
        # Only the root's logits are read: the catch-up tokens' would cost a vocabulary matmul each.
        logits = self._run(toks, mask, block_positions(self.slots, valid), keep=1)
        self.slots.append(valid, all_valid=dense)
        self.pend, self.pend_valid, self.root_in_cache = toks[:, :0], valid[:, :0], True
        committed = self.slots.size

        def step(
            tokens: torch.Tensor, parent: torch.Tensor, visible: torch.Tensor, depth: int
        ) -> torch.Tensor:
            b, k = tokens.shape
            # A chain node sees every slot and every earlier node: causal, no mask needed.
            chained = settings.mode == CHAIN and self.slots.dense
            mask = None if chained else self.slots.nodes_mask(visible)
            return self._run(tokens, mask, (self.slots.lengths[:, None] + depth - 1).expand(b, k))

        if settings.mode == CHAIN:
            tree = draft_chain(logits[:, -1], step, settings.draft_length, settings.sampling, gen)
        else:
            tree = dynamic_tree(logits[:, -1], step, settings.depth, settings.topk, settings.budget)
        truncate(self.cache, committed)
        return tree

    def select_rows(self, rows: torch.Tensor) -> None:
        if self.cache is not None:
            select_rows(self.cache, rows)
        self.slots.select_rows(rows)
        self.pend, self.pend_valid = self.pend.index_select(0, rows), self.pend_valid.index_select(0, rows)
