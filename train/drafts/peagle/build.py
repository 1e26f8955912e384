"""Building a fresh P-EAGLE head: the EAGLE-3 build (eagle3/build.py: sizes, draft vocabulary, LM head start),
then the same weights in a PEagleHead with the mask id and the trained k."""

from __future__ import annotations

from dataclasses import asdict

import torch
from transformers import PreTrainedTokenizerBase

from train.drafts.eagle3.build import build as build_eagle3
from train.drafts.peagle.config import PEagleConfig
from train.drafts.peagle.head import PEagleHead, PEagleHeadConfig
from train.drafts.spec import BuildContext
from train.modeling.target import FrozenTarget


def default_mask_token_id(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> int:
    """The tokenizer's mask token when it has one inside the embedding, else its EOS id.

    Why any row is safe here (item 3 of issue 23): vLLM marks P-EAGLE's mask slots by their place in the
    block (is_masked_token_mask, llm_base_proposer.py), not by their id, and so does our drafter; the id only
    picks the embedding row those slots read (the target's, frozen), beside the learned mask_hidden that
    carries what training taught them. A token the target emits may share the id without harm: a real
    token always sits in the block's first slot with its own features. EOS is preferred as a row every
    tokenizer has. No separate mask embedding: vLLM's EAGLE-3 loader has no place for one."""
    mask = tokenizer.mask_token_id
    if mask is not None and 0 <= mask < vocab_size:
        return int(mask)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has neither a mask token nor an EOS token: set draft.mask_token_id")
    return int(eos)


def build(cfg: PEagleConfig, target: FrozenTarget, ctx: BuildContext) -> PEagleHead:
    """SPEC.build: the EAGLE-3 head of these settings, as a PEagleHead (its weights copied, d2t included)."""
    if cfg.ttt_steps < 2:
        raise ValueError(
            f"draft.ttt_steps={cfg.ttt_steps}: P-EAGLE drafts ttt_steps tokens per forward; use >= 2 "
            "(1 is plain EAGLE-3: draft=eagle3)"
        )
    base = build_eagle3(cfg, target, ctx)
    mask = cfg.mask_token_id
    if mask is None:
        mask = default_mask_token_id(target.tokenizer, target.vocab_size)
    head = PEagleHead(
        PEagleHeadConfig(
            **{**asdict(base.config), "architecture": cfg.name},
            mask_token_id=int(mask),
            parallel_tokens=cfg.ttt_steps,
        )
    )
    missing, unexpected = head.load_state_dict(base.state_dict(), strict=False)
    if list(missing) != ["mask_hidden"] or unexpected:  # the EAGLE-3 weights, all of them, and nothing else
        raise RuntimeError(f"P-EAGLE build: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        head.mask_hidden.copy_(mask_hidden_start(target, head))
    return head


@torch.no_grad()
def mask_hidden_start(target: FrozenTarget, head: PEagleHead) -> torch.Tensor:
    """The target's fused layers at the mask token read alone: a real feature, of the scale the slot's
    residual and fc expect. Why not small noise: the tiny targets' features have an RMS near 6, so a 0.02
    start leaves a mask slot's residual empty and its input a direction the head never learns to use."""
    ids = torch.tensor([[head.config.mask_token_id]], device=target.device)
    feats = target.features(ids, layers=tuple(head.config.feature_layers)).layers
    return feats[0, 0].float()
