"""P-EAGLE in the vLLM `speculators` layout: the EAGLE-3 one (eagle3/export_speculators.py, written by it)
plus `speculators_model_type "peagle"`, a top-level `mask_token_id` and the `mask_hidden` tensor
[3 x target hidden].

Read in vLLM 0.32: transformers_utils/configs/speculators/algos.py update_peagle (mask_token_id is required and
becomes the proposer's pard_token; norm_before_residual defaults to false there, so it is always written;
architecture PeagleLlamaForCausalLM, the EAGLE-3 Llama model), model_executor/models/llama_eagle3.py (mask_hidden
loaded into a [1, 3 x hidden] buffer, a ValueError when absent) and v1/spec_decode/llm_base_proposer.py
(mask_hidden projected by combine_hidden_states = our head's fuse). Served with
`{"method": "eagle3", "parallel_drafting": true}` (SPEC.serve and SPEC.serve_options).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from train.drafts.eagle3 import export_shared as e3
from train.drafts.eagle3 import export_speculators as eagle3_fmt
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.drafts.peagle.head import PEagleHead, PEagleHeadConfig
from train.export_formats.card import vllm_commands
from train.export_formats.common import (
    DTYPES,
    ExportError,
    Target,
    read_json,
    read_tensors,
    write_json,
    write_tensors,
)

NAME = "speculators-peagle"
DETECT_ORDER = -1  # before eagle3's speculators format, which claims any speculators_model_type
SERVE_OPTIONS = {"parallel_drafting": True}  # vLLM's switch beside method "eagle3" (SPEC.serve_options)


def check_exportable(head: nn.Module, target: Target) -> PEagleHead:
    """Refuse, naming the key, what vLLM would misread: a head not trained for parallel drafting, a mask id
    outside the embedding, a mask_hidden of another width."""
    if not isinstance(head, PEagleHead) or head.config.parallel_tokens < 2:
        k = getattr(head.config, "parallel_tokens", 1)
        raise ExportError(
            f"{NAME}: this {type(head).__name__} was not trained for parallel drafting (parallel_tokens={k}); "
            "vLLM would draft its mask slots from an untrained mask_hidden. Train draft=peagle, or export it as "
            "EAGLE-3 with --format speculators"
        )
    vocab = int(target.config.vocab_size)
    if not 0 <= head.config.mask_token_id < vocab:
        raise ExportError(
            f"{NAME}: mask_token_id={head.config.mask_token_id} lies outside the target's embedding "
            f"(0..{vocab - 1}); vLLM would embed a row that does not exist. Set draft.mask_token_id inside it"
        )
    width = 3 * int(target.config.hidden_size)
    if head.mask_hidden.numel() != width:
        raise ExportError(
            f"{NAME}: mask_hidden has {head.mask_hidden.numel()} values; vLLM reads 3 x target hidden = {width}"
        )
    return head


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    head = check_exportable(head, target)
    cfg = head.config
    # The EAGLE-3 part, written by the EAGLE-3 exporter from the same weights (mask_hidden set aside).
    base_cfg = Eagle3HeadConfig(
        **{k: v for k, v in asdict(cfg).items() if k not in ("mask_token_id", "parallel_tokens")}
    )
    base = Eagle3Head(base_cfg)
    base.load_state_dict({k: v for k, v in head.state_dict().items() if k != "mask_hidden"})
    eagle3_fmt.export(base, {**meta, "speculative_tokens": cfg.parallel_tokens}, out, target, dtype)
    tensors = read_tensors(out)
    tensors["mask_hidden"] = head.mask_hidden.detach().to(DTYPES[dtype]).cpu().contiguous()
    write_tensors(out / "model.safetensors", tensors)
    config = read_json(out / "config.json")
    config["speculators_model_type"] = "peagle"
    config["speculators_config"]["algorithm"] = "peagle"
    config["mask_token_id"] = int(cfg.mask_token_id)
    write_json(out / "config.json", config)
    return [
        *vllm_commands(target.path, out, "eagle3", cfg.parallel_tokens, SERVE_OPTIONS),
        f"Trained to draft {cfg.parallel_tokens} tokens per forward: num_speculative_tokens above it drafts "
        "from mask slots it never saw in training.",
        "verifier.name_or_path is the target path given at export; change it if the target moves.",
    ]


def matches(src: Path) -> bool:
    cfg = src / "config.json"
    return cfg.is_file() and read_json(cfg).get("speculators_model_type") == "peagle"


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    if c.get("speculators_model_type") != "peagle":
        raise ExportError(
            f"{src}: speculators_model_type={c.get('speculators_model_type')!r}; expected 'peagle'"
        )
    if c.get("mask_token_id") is None:
        raise ExportError(f"{src}: config.json has no mask_token_id (vLLM requires it for P-EAGLE)")
    if c.get("fc_norm"):
        raise ExportError(f"{src}: fc_norm (one norm per fused layer) is not supported by our head")
    layer_cfg = c["transformer_layer_config"]
    ids = c.get("eagle_aux_hidden_state_layer_ids")
    if not ids:
        if target is None:
            raise ExportError(f"{src}: no eagle_aux_hidden_state_layer_ids; pass --target for the default")
        ids = e3.engine_capture_defaults(target.num_layers)
    e3.check_imported_layers(list(ids), src, target, "eagle_aux_hidden_state_layer_ids (vLLM numbering)")
    draft_vocab = int(c.get("draft_vocab_size") or layer_cfg["vocab_size"])
    base = e3.head_config_from_llama(layer_cfg, draft_vocab, list(ids), str(src))
    proposals = (c.get("speculators_config") or {}).get("proposal_methods") or [{}]
    cfg = PEagleHeadConfig(
        **{**asdict(base), "architecture": "peagle"},
        mask_token_id=int(c["mask_token_id"]),
        parallel_tokens=int(proposals[0].get("speculative_tokens") or 2),
    )
    # vLLM's PEagle loader defaults norm_before_residual to false when the key is absent; so do we.
    cfg.norm_before_residual = bool(c.get("norm_before_residual", False))
    cfg.norm_before_fc = bool(c.get("norm_before_fc", False))
    raw = read_tensors(src)
    if "mask_hidden" not in raw:
        raise ExportError(f"{src}: no mask_hidden tensor (vLLM refuses a P-EAGLE checkpoint without it)")
    ours = {
        k: v
        for k, v in raw.items()
        if k not in ("t2d", "embed_tokens.weight", "verifier_lm_head.weight", "verifier_norm.weight")
    }
    ours["mask_hidden"] = ours["mask_hidden"].reshape(-1)
    ours["d2t"] = e3.absolute_d2t(raw["d2t"]) if "d2t" in raw else torch.arange(draft_vocab)
    head = PEagleHead(cfg)
    missing, unexpected = head.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in ours.items()}, strict=False
    )
    if missing or unexpected:
        raise ExportError(f"{src}: missing tensors {missing}, unexpected {unexpected}")
    verifier = (c.get("speculators_config") or {}).get("verifier") or {}
    return head, {"imported_format": NAME, "verifier": verifier.get("name_or_path")}
