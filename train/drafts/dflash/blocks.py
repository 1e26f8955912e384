"""Many anchored blocks per training row in one forward: which anchors, what each block's slots see, and
which token each slot is trained to predict.

An anchor a is a position whose token is known at decode time (the last accepted token). Its block holds
[token a, mask x (B-1)] at positions a..a+B-1; slot i >= 1 predicts token a+i, whose target distribution is
the target's logits at a+i-1. A slot attends to the context strictly before a (the target's features there,
as at decode time, where position a has no feature yet) and to every slot of its own block (bidirectional),
never to another block or to a later context position. Rows are laid out [context T | A blocks of B].
"""

from __future__ import annotations

import torch


def anchor_candidates(
    loss_mask: torch.Tensor, tokens: torch.Tensor, mask_token_id: int, doc_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T) bool: positions a that can anchor a block. a >= 1 (a context to read; packed: in a's own
    conversation), token a+1 is trained
    (slot 1 has a loss), token a is not the mask id (it would be read as a mask slot; decoding never starts
    a block from it, see docs/dflash.md), and a+1 is in a's conversation."""
    ok = torch.zeros_like(loss_mask, dtype=torch.bool)
    ok[:, 1:-1] = loss_mask[:, 2:].bool()
    ok &= tokens != mask_token_id
    if doc_ids is not None:  # a+1 and a-1 (a's context) in a's conversation, as when it is alone in a row
        same = doc_ids[:, 1:] == doc_ids[:, :-1]
        ok[:, :-1] &= same
        ok[:, 1:] &= same
    return ok


def select_anchors(
    candidates: torch.Tensor, max_anchors: int, generator: torch.Generator | None = None, random: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to max_anchors candidates per row, in increasing order: (anchors (B, A), valid (B, A)); at random
    in training, the first ones otherwise (validation: the same blocks whatever the padding after them).
    A = min(max_anchors, most candidates in any row); a row with fewer pads with invalid anchors at 0."""
    b, t = candidates.shape
    if random:
        noise = torch.rand(b, t, generator=generator, device=candidates.device)
    else:
        noise = 1.0 - torch.arange(t, device=candidates.device)[None].expand(b, t) / (t + 1)
    score = torch.where(candidates, noise, torch.full_like(noise, -1.0))  # candidates first, at random
    a = max(1, min(max_anchors, int(candidates.sum(1).max())))
    top = score.topk(a, dim=1)
    valid = top.values >= 0
    anchors = torch.where(valid, top.indices, torch.zeros_like(top.indices))
    order = torch.where(valid, anchors, torch.full_like(anchors, t)).argsort(1)  # valid ones ascending
    return anchors.gather(1, order), valid.gather(1, order)


def block_layout(anchors: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot positions (B, A*Bs) = anchor + i, slot index i (A*Bs,)) in block-major order."""
    offs = torch.arange(block_size, device=anchors.device)
    pos = (anchors[:, :, None] + offs).flatten(1)
    return pos, offs.repeat(anchors.shape[1])


def block_attention_mask(
    anchors: torch.Tensor,
    valid: torch.Tensor,
    seq_len: int,
    block_size: int,
    doc_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, 1, A*Bs, T + A*Bs) bool. Query slot of block j sees context position p iff p < anchors[j] (and p
    is in the anchor's conversation; an invalid anchor sees no context), and every slot of block j."""
    b, a = anchors.shape
    q_anchor = anchors.repeat_interleave(block_size, dim=1)  # (B, Q)
    ctx = torch.arange(seq_len, device=anchors.device)[None, None, :] < q_anchor[:, :, None]  # (B, Q, T)
    ctx &= valid.repeat_interleave(block_size, dim=1)[:, :, None]
    if doc_ids is not None:
        q_doc = doc_ids.gather(1, q_anchor)
        ctx &= doc_ids[:, None, :] == q_doc[:, :, None]
    blk = torch.arange(a * block_size, device=anchors.device) // block_size
    own = (blk[:, None] == blk[None, :]).expand(b, -1, -1)
    return torch.cat([ctx, own], dim=2)[:, None]


def slot_targets(
    anchors: torch.Tensor,
    valid: torch.Tensor,
    loss_mask: torch.Tensor,
    block_size: int,
    doc_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(index into the row of the logits that predict each slot's token (B, Q), slot has a loss (B, Q)).
    Slot i of anchor a predicts token a+i from the target's logits at a+i-1; slot 0 (the anchor) never has
    a loss, nor a slot past the row, outside the anchor's conversation, or on an untrained token."""
    t = loss_mask.shape[1]
    pos, slot = block_layout(anchors, block_size)
    inside = pos < t
    pos_c = pos.clamp(max=t - 1)
    ok = inside & (slot > 0)[None] & valid.repeat_interleave(block_size, dim=1)
    ok &= loss_mask.bool().gather(1, pos_c)
    if doc_ids is not None:
        ok &= doc_ids.gather(1, pos_c) == doc_ids.gather(1, anchors.repeat_interleave(block_size, dim=1))
    return (pos_c - 1).clamp(min=0), ok


def position_weights(block_size: int, gamma: float, device: torch.device | None = None) -> torch.Tensor:
    """(Bs,) loss weight per slot: 0 for the anchor, exp(-(i-1)/gamma) for slot i >= 1 (the DFlash paper's
    decay; speculators' and SpecForge's default). An early slot's error ends the accepted run, so it weighs
    most; gamma sets how fast deeper slots fade."""
    i = torch.arange(block_size, device=device, dtype=torch.float32)
    return torch.where(i > 0, torch.exp(-(i - 1).clamp(min=0) / gamma), torch.zeros_like(i))
