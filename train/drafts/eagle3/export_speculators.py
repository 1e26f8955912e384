"""EAGLE-3 (and the deep Scylla head) in the vLLM `speculators` format.

Defined by: vllm-project/speculators `src/speculators/models/eagle3/{config,core}.py` and `config.py`
(SpeculatorsConfig / VerifierConfig, greedy proposal), as read by vLLM
`vllm/transformers_utils/configs/speculators/{base,algos}.py` (validate_speculators_config: needs
speculators_config.proposal_methods[0].speculative_tokens, speculators_config.verifier.name_or_path,
speculators_model_type, transformer_layer_config dict) and `vllm/model_executor/models/llama_eagle3.py`
(Eagle3LlamaForCausalLM: layers.{i}.*, layer 0 with 2H q/k/v + hidden_norm; fc; norm; lm_head; d2t offsets;
t2d skipped; embed_tokens optional, shared with the target when absent). Read 2025.
The target's token embedding IS written (embed_tokens.weight): speculators 0.9.0's from_pretrained keeps an
all-zero embedding when it is absent (its "not yet loaded" check fails under transformers 5.x), silently.
vLLM defaults norm_before_residual to True when the key is absent, so it is always written; both it and
norm_before_fc (speculators 0.9.0's trainer defaults) are head switches here (Eagle3HeadConfig). eagle_aux_hidden_state_layer_ids are used by vLLM
as "capture the input of layer id" = hidden_states[id], i.e. our feature_layers unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from train.drafts.eagle3 import export_shared as e3
from train.drafts.eagle3.head import Eagle3Head
from train.export_formats.card import vllm_commands
from train.export_formats.common import (
    DTYPES,
    ExportError,
    Target,
    cast,
    read_json,
    read_tensors,
    refuse_unknown,
    write_json,
    write_tensors,
)

NAME = "speculators"
SPECULATORS_VERSION = "0.3.0"  # the library version whose config schema this follows


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    if not isinstance(head, Eagle3Head):
        raise ExportError(
            f"{NAME}: only EAGLE-3 heads (eagle3/scylla) are exported in this format, not {type(head).__name__}"
        )
    e3.check_representable(head, NAME, target)
    sd = {k: v for k, v in head.state_dict().items() if k != "d2t"}
    refuse_unknown(
        sd, {k for k in sd if k.startswith(("fc.", "layers.", "norm.", "lm_head.", "input_norm."))}, NAME
    )
    tensors = dict(sd)
    cfg = head.config
    if cfg.draft_vocab_size != cfg.vocab_size:
        tensors.update(e3.vocab_maps(head))
    elif not torch.equal(head.d2t.cpu(), torch.arange(cfg.vocab_size)):
        raise ExportError(
            f"{NAME}: a full-size draft vocabulary must map each id to itself (d2t is permuted)"
        )
    # else: no d2t/t2d. vLLM (llama_eagle3.py) has no d2t parameter when the vocabularies are equal and
    # refuses to load one ("no module or parameter named 'draft_id_to_target_id'").
    tensors["embed_tokens.weight"] = target.model().get_input_embeddings().weight.detach()
    write_tensors(out / "model.safetensors", cast(tensors, DTYPES[dtype]))
    steps = int(meta.get("speculative_tokens") or meta.get("ttt_steps") or 3)
    config = {
        "architectures": ["Eagle3Speculator"],
        "speculators_model_type": "eagle3",
        "speculators_version": SPECULATORS_VERSION,
        "speculators_config": {
            "algorithm": "eagle3",
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": steps}],
            "default_proposal_method": "greedy",
            "verifier": {
                "name_or_path": target.path,
                "architectures": list(getattr(target.config, "architectures", None) or []),
            },
        },
        "transformer_layer_config": e3.llama_fields(cfg, target, dtype),
        "draft_vocab_size": cfg.draft_vocab_size,
        "norm_before_residual": cfg.norm_before_residual,
        "norm_before_fc": cfg.norm_before_fc,
        "target_hidden_size": None,
        "eagle_aux_hidden_state_layer_ids": list(cfg.feature_layers),
        "torch_dtype": dtype,
    }
    write_json(out / "config.json", config)
    return [
        *vllm_commands(target.path, out, "eagle3", steps),
        "verifier.name_or_path is the target path given at export; change it if the target moves.",
        "`speculators.SpeculatorModel.from_pretrained` loads this folder too (embed_tokens is the target's).",
    ]


def matches(src: Path) -> bool:
    cfg = src / "config.json"
    return cfg.is_file() and read_json(cfg).get("speculators_model_type") is not None


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    if c.get("speculators_model_type") != "eagle3":
        raise ExportError(
            f"{src}: speculators_model_type={c.get('speculators_model_type')!r}; only 'eagle3' is imported"
        )
    if c.get("fc_norm"):
        raise ExportError(f"{src}: fc_norm (one norm per fused layer) is not supported by our head")
    if c.get("norm_output"):
        # speculators' trainer defaults to it for EAGLE-3: each unroll step feeds back the normed state. Our
        # drafter feeds back the state before the norm, so it would draft from inputs the head never saw.
        raise ExportError(
            f"{src}: norm_output=true (the normed state fed back across steps) is not supported by our head; "
            "train it with speculators' --no-norm-output to import it"
        )
    layer_cfg = c["transformer_layer_config"]
    ids = c.get("eagle_aux_hidden_state_layer_ids")
    if not ids:
        if target is None:
            raise ExportError(
                f"{src}: no eagle_aux_hidden_state_layer_ids; pass --target for the default (2, L/2, L-3)"
            )
        ids = e3.engine_capture_defaults(target.num_layers)
    e3.check_imported_layers(list(ids), src, target, "eagle_aux_hidden_state_layer_ids (vLLM numbering)")
    draft_vocab = int(c.get("draft_vocab_size") or layer_cfg["vocab_size"])
    cfg = e3.head_config_from_llama(layer_cfg, draft_vocab, list(ids), str(src))
    # vLLM's loader defaults norm_before_residual to true when the key is absent; so do we.
    cfg.norm_before_residual = bool(c.get("norm_before_residual", True))
    cfg.norm_before_fc = bool(c.get("norm_before_fc", False))
    raw = read_tensors(src)
    ours = {
        k: v
        for k, v in raw.items()
        if k not in ("t2d", "embed_tokens.weight", "verifier_lm_head.weight", "verifier_norm.weight")
    }
    ours["d2t"] = e3.absolute_d2t(raw["d2t"]) if "d2t" in raw else torch.arange(draft_vocab)
    verifier = (c.get("speculators_config") or {}).get("verifier") or {}
    return e3.build_head(cfg, ours, str(src)), {
        "imported_format": NAME,
        "verifier": verifier.get("name_or_path"),
    }
