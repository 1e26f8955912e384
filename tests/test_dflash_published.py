"""Published DFlash checkpoints import and round-trip (issue 23 item 5): folders in the two config layouts z-lab
publishes, rebuilt at the tiny target's size: Qwen3-*-DFlash-b16 (block_size at the top level, auto_map,
num_target_layers, all-full layer_types) and the later Qwen3.5-*-DFlash (block_size inside dflash_config, no
layer_types, a Qwen3 `use_sliding_window` that vLLM does not read for DFlash). Both carry no mask file: the
mask slots embed a real vocabulary id through the target's embedding. What vLLM 0.32 would run differently
from our head (sliding windows, causal blocks, sinks) is refused naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eval.drafters import load_drafter
from eval.engine import Engine
from tests.conftest import TINY_LLAMA
from train.decoding.drafter import CHAIN, DraftSettings, NoDrafter
from train.drafts.dflash import export_vllm as fmt
from train.drafts.dflash.head import DFlashHead, DFlashHeadConfig
from train.export import import_draft
from train.export_formats.common import ExportError, Target
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget

MASK_ID = 4000  # a real row of the tiny target's embedding, as z-lab's 151669 is of Qwen3's
LAYERS = [1, 2, 3]  # feature layers; published target_layer_ids are these - 1


@pytest.fixture(scope="module")
def tgt() -> Target:
    return Target.load(str(TINY_LLAMA))


def _head(tgt: Target) -> DFlashHead:
    torch.manual_seed(0)
    dims = attention_dims(tgt.config, 2, 96, num_kv_heads=2)
    head = DFlashHead(DFlashHeadConfig(**dims, vocab_size=int(tgt.config.vocab_size), feature_layers=LAYERS,
                                       block_size=16, mask_token_id=MASK_ID, separate_mask_embedding=False))  # fmt: skip
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return head.eval()


def _published(folder: Path, head: DFlashHead, tgt: Target, style: str) -> Path:
    """Our export's tensors under a config written the way z-lab's checkpoints write it."""
    fmt.export(head, {}, folder, tgt, "float32")
    ours = json.loads((folder / "config.json").read_text())
    assert not (folder / fmt.MASK_FILE).exists()  # the mask is the target's row MASK_ID
    keep = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
            "num_hidden_layers", "rms_norm_eps", "max_position_embeddings", "vocab_size")  # fmt: skip
    cfg = {k: ours[k] for k in keep} | {
        "architectures": ["DFlashDraftModel"],
        "model_type": "qwen3",
        "hidden_act": "silu",
        "attention_bias": False,
        "tie_word_embeddings": False,
        "dtype": "bfloat16",
        "eos_token_id": 2,
    }
    ids = {"mask_token_id": MASK_ID, "target_layer_ids": [i - 1 for i in LAYERS]}
    if style == "b16":  # Qwen3-8B-DFlash-b16
        cfg |= {"auto_map": {"AutoModel": "dflash.DFlashDraftModel"}, "block_size": 16, "dflash_config": ids,
                "layer_types": ["full_attention"] * 2, "num_target_layers": 4, "rope_scaling": None,
                "rope_theta": 10000.0, "max_window_layers": 2, "use_sliding_window": False}  # fmt: skip
    else:  # Qwen3.5-*-DFlash
        cfg |= {"dflash_config": {"block_size": 16, **ids}, "use_sliding_window": True, "sliding_window": 4096,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return folder


@pytest.mark.parametrize("style", ["b16", "qwen3.5"])
def test_published_layout_imports_and_round_trips(tgt: Target, tmp_path: Path, style: str) -> None:
    head = _head(tgt)
    src = _published(tmp_path / "published", head, tgt, style)
    back, meta = fmt.load(src, tgt)
    assert meta == {"imported_format": "dflash"}
    c = back.config
    assert (c.block_size, c.mask_token_id, c.feature_layers, c.separate_mask_embedding) == (
        16,
        MASK_ID,
        LAYERS,
        False,
    )
    assert back.state_dict().keys() == head.state_dict().keys()
    for k, v in head.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, msg=k)
    # The CLI's path (`python -m train.export --import`, format detected) makes an export our engine drafts
    # with, losslessly.
    ours = import_draft(src, tmp_path / "ours", None, str(TINY_LLAMA))
    target = FrozenTarget.load(str(TINY_LLAMA))
    drafter, meta = load_drafter(str(ours), target)
    assert meta["architecture"] == "dflash" and meta["imported_from"] == str(src)
    prompt = [target.tokenizer("The json module")["input_ids"]]
    settings = DraftSettings(mode=CHAIN, draft_length=15)
    spec = Engine(target, drafter, settings, {0}).generate(prompt, 12)
    assert (
        spec.rows[0].tokens == Engine(target, NoDrafter(), settings, {0}).generate(prompt, 12).rows[0].tokens
    )
    assert sum(spec.rows[0].drafted) >= 15
    # ...and out again: the same tensors, the same servable keys, still no mask file.
    fmt.export(back, {}, tmp_path / "again", tgt, "float32")
    a, b = load_file(str(src / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["block_size"] == 16 and again["dflash_config"] == {"mask_token_id": MASK_ID,
                                                                    "target_layer_ids": [0, 1, 2]}  # fmt: skip
    assert not (tmp_path / "again" / fmt.MASK_FILE).exists()


@pytest.mark.parametrize(
    ("change", "key"),
    [({"layer_types": ["sliding_attention", "full_attention"]}, "layer_types"),
     ({"dflash_config": {"use_swa": True, "swa_window_size": 512}}, "dflash_config.use_swa"),
     ({"is_causal": True}, "is_causal"),
     ({"dflash_config": {"causal": True}}, "dflash_config.causal"),
     ({"dflash_config": {"attention_sink_bias": True}}, "dflash_config.attention_sink_bias"),
     ({"add_swa_attention_sink_bias": True}, "add_swa_attention_sink_bias"),
     ({"dflash_config": {"use_aux_hidden_state": False}}, "use_aux_hidden_state"),
     ({"dflash_config": {"block_size": 8}}, "block_size=16 != dflash_config.block_size=8"),
     ({"block_size": None}, "no block_size")],
)  # fmt: skip
def test_what_vllm_would_run_differently_is_refused(
    tgt: Target, tmp_path: Path, change: dict, key: str
) -> None:
    src = _published(tmp_path / "published", _head(tgt), tgt, "b16")
    cfg = json.loads((src / "config.json").read_text())
    for k, v in change.items():
        if k == "dflash_config":
            cfg[k] = {**cfg[k], **v}
        elif v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match=key) as err:
        fmt.load(src, tgt)
    assert "\n" not in str(err.value) and "config.json" in str(err.value)
