"""Building a DFlash head for a target: the target layers it fuses, the mask id, the starting weights."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from train.drafts.dflash.config import DFlashConfig
from train.drafts.dflash.head import DFlashHead, DFlashHeadConfig
from train.drafts.spec import BuildContext
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget

MAX_FUSED = 5  # the DFlash paper fuses five target layers


def target_layers(cfg: DFlashConfig | DFlashHeadConfig, depth: int) -> tuple[int, ...]:
    """SPEC.target_layers: the draft config's (None = the default) or a built head's fused layers."""
    return tuple(cfg.feature_layers or default_feature_layers(depth))


def default_feature_layers(num_layers: int) -> list[int]:
    """Up to five target layers spread evenly over hidden_states[1..L-1], the ones vLLM can capture (it
    reads hidden_states[id + 1] for target_layer_ids 0..L-2; the last layer's output is never handed over)."""
    last = num_layers - 1
    if last < 1:
        raise ValueError(f"a {num_layers}-layer target has no layer vLLM can hand to a DFlash head")
    n = min(MAX_FUSED, last)
    return sorted({1 + round(i * (last - 1) / max(1, n - 1)) for i in range(n)})


def default_mask_token_id(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> int:
    """The tokenizer's own mask token when it has one inside the embedding; else its EOS id.

    Why EOS is safe: the id only marks the mask slots, and vLLM (like our engine) substitutes the head's own
    mask embedding wherever a block's input equals it. A block's first slot is the last token the target
    emitted, and a sequence ends at EOS, so no block ever starts from it: the substitution never hits a real
    token. Any other id could be emitted by the target (the tiny targets have no spare row, and an embedding
    row past the tokenizer is still a row the LM head can sample), which would cost acceptance, not
    correctness: drafts are verified either way. docs/dflash.md, "The mask token"."""
    mask = tokenizer.mask_token_id
    if mask is not None and 0 <= mask < vocab_size:
        return int(mask)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has neither a mask token nor an EOS token: set the DFlash mask id")
    return int(eos)


def build_head(
    target: FrozenTarget,
    num_layers: int = 1,
    block_size: int = 8,
    feature_layers: list[int] | None = None,
    mask_token_id: int | None = None,
    separate_mask_embedding: bool = True,
    intermediate_size: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
) -> DFlashHead:
    dims = attention_dims(target.model.config, num_layers, intermediate_size, num_heads, num_kv_heads)
    mask = (
        default_mask_token_id(target.tokenizer, target.vocab_size) if mask_token_id is None else mask_token_id
    )
    head = DFlashHead(
        DFlashHeadConfig(
            **dims,
            vocab_size=target.vocab_size,
            feature_layers=list(feature_layers or default_feature_layers(target.num_layers)),
            block_size=block_size,
            mask_token_id=mask,
            separate_mask_embedding=separate_mask_embedding,
        )
    )
    if head.mask_embedding is not None:  # start from the target's row: an embedding of the right scale
        with torch.no_grad():
            row = target.embed(torch.tensor([mask], device=target.device))[0]
            head.mask_embedding.copy_(row.float())
    return head


def build(cfg: DFlashConfig, target: FrozenTarget, ctx: BuildContext) -> DFlashHead:
    """SPEC.build: a fresh head from `draft.*`."""
    return build_head(
        target,
        num_layers=cfg.num_layers,
        block_size=cfg.block_size,
        feature_layers=cfg.feature_layers,
        mask_token_id=cfg.mask_token_id,
        intermediate_size=cfg.intermediate_size,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_kv_heads,
    )
