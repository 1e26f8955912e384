"""Packed rows: several conversations in one row, kept apart in every attention of the target and the draft.

A packed batch carries `doc_ids` (B, T): the conversation each position belongs to (data/packing.py). From
it come the per-conversation positions (rope restarts at 0 for every conversation) and the block-diagonal
causal mask. On CUDA with flash-attn installed, attention runs varlen over the conversations instead of a
dense (T, T) mask: the target through transformers (which detects packing from the restarting position ids
when it runs flash_attention_2 and gets no mask), the draft's own attention through `VarlenMask`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch


def doc_positions(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) positions that restart at 0 wherever the conversation id changes."""
    idx = torch.arange(doc_ids.shape[1], device=doc_ids.device).expand_as(doc_ids)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first


def doc_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query t sees key s <= t of its own conversation only."""
    t = doc_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=doc_ids.device).tril()
    return ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal)[:, None]


@dataclass
class VarlenMask:
    """Conversation boundaries over the flattened (B*T) tokens, for flash-attn's varlen kernel."""

    cu_seqlens: torch.Tensor  # (n_segments + 1,) int32 offsets into the flattened tokens
    max_seqlen: int


def varlen_of(doc_ids: torch.Tensor) -> VarlenMask:
    """Segments = runs of one conversation id within a row (a row boundary always ends a segment)."""
    b, t = doc_ids.shape
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    flat_starts = torch.nonzero(starts.reshape(-1)).flatten()
    cu = torch.cat([flat_starts, torch.tensor([b * t], device=doc_ids.device)]).to(torch.int32)
    return VarlenMask(cu, int((cu[1:] - cu[:-1]).max()))


def flash_varlen_available(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None


@dataclass
class Packing:
    """One packed batch's layout, built once per micro-batch and handed to the target and the objective."""

    doc_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T), restarting per conversation
    varlen: bool  # True: flash-attn varlen (CUDA); False: dense block masks (sdpa / eager)

    @classmethod
    def of(cls, doc_ids: torch.Tensor, attn_implementation: str) -> Packing:
        varlen = attn_implementation == "flash_attention_2" and flash_varlen_available(doc_ids.device)
        return cls(doc_ids, doc_positions(doc_ids), varlen)

    def draft_mask(self, doc_ids: torch.Tensor | None = None) -> torch.Tensor | VarlenMask:
        """The mask a draft head's attention takes for a sequence laid out as `doc_ids` (default: the row's)."""
        docs = self.doc_ids if doc_ids is None else doc_ids
        return varlen_of(docs) if self.varlen else doc_causal_mask(docs)

    def hf_mask(self, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor | None:
        """What a transformers model takes as attention_mask beside these position_ids: nothing for flash-attn
        (it reads the packing from the restarting positions), a bool mask for sdpa, an additive one for eager
        (eager adds the mask to its scores, so a bool one would be wrong there)."""
        if attn_implementation == "flash_attention_2":
            return None
        mask = doc_causal_mask(self.doc_ids)
        if attn_implementation == "sdpa":
            return mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, torch.finfo(dtype).min
        )

    def same_doc(self, shift: int) -> torch.Tensor:
        """(B, T - shift) bool: positions t and t + shift belong to the same conversation."""
        return self.doc_ids[:, : self.doc_ids.shape[1] - shift] == self.doc_ids[:, shift:]
