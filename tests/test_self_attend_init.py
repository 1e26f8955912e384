"""draft.self_attend_init: layer 0 of an EAGLE-3/Scylla head starts attending to each position itself.

Checked by what attention does, not by the weights: when every query attends (almost) only to its own position,
the layer's output at each position is o_proj of that position's own value; at a random init it is a mix of all
earlier positions' values. Both the tiny targets' equal head counts and a grouped-query (GQA) head are covered.
"""

from __future__ import annotations

import pytest
import torch

from train.drafts.eagle3.build import self_attend_init
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig


def _self_share_of(attn: torch.nn.Module, heads: int, kv_heads: int, head_dim: int, width: int) -> float:
    """Mean cosine similarity, over positions 4.., between the attention's output and o_proj(own value)."""
    torch.manual_seed(0)
    fused = torch.nn.functional.normalize(torch.randn(1, 24, width), dim=-1) * width**0.5  # RMS-normed inputs
    pos = torch.arange(24)[None]
    with torch.no_grad():
        out = attn(fused, pos)
        v = attn.v_proj(fused).view(1, 24, kv_heads, head_dim).repeat_interleave(heads // kv_heads, dim=2)
        own = attn.o_proj(v.reshape(1, 24, -1))
    return torch.nn.functional.cosine_similarity(out[0, 4:], own[0, 4:], dim=-1).mean().item()


def _self_share(heads: int, kv_heads: int, init: bool) -> float:
    torch.manual_seed(0)
    cfg = Eagle3HeadConfig(hidden_size=64, intermediate_size=128, num_heads=heads, num_kv_heads=kv_heads,
                           head_dim=16, vocab_size=256, draft_vocab_size=256, feature_layers=[1, 2, 3],
                           num_layers=2, layout="eagle3")  # fmt: skip
    attn = Eagle3Head(cfg).layers[0].self_attn
    if init:
        self_attend_init(attn)
    return _self_share_of(attn, heads, kv_heads, 16, 128)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (4, 2)])
def test_layer0_attends_to_its_own_position_after_the_init(heads: int, kv_heads: int) -> None:
    assert _self_share(heads, kv_heads, init=True) > 0.9
    assert _self_share(heads, kv_heads, init=False) < 0.7  # a random init mixes the past


def test_the_switch_is_a_setting_of_eagle3_and_scylla_only() -> None:
    from dataclasses import fields

    from train.drafts.registry import SPECS  # each algorithm's config class holds exactly its settings

    has = {
        name for name, spec in SPECS.items() if "self_attend_init" in {f.name for f in fields(spec.config)}
    }
    assert has == {"eagle3", "scylla", "peagle"}  # peagle's config extends EAGLE-3's: the same layer 0


@pytest.mark.parametrize("draft", ["eagle3", "scylla"])
def test_the_config_switch_reaches_the_head_the_trainer_builds(draft: str, tmp_path) -> None:
    """`draft.self_attend_init=true` on the command line, through Hydra, the typed config and the draft
    factory (what `python -m train` runs), changes what the built head's layer 0 attends to; false does not."""
    from hydra import compose, initialize_config_dir

    from data.paths import CONF_DIR, register_resolvers
    from tests.conftest import TINY_LLAMA
    from train.config import to_typed
    from train.draft_factory import build_draft
    from train.modeling.target import FrozenTarget

    register_resolvers()
    target = FrozenTarget.load(str(TINY_LLAMA))
    share = {}
    for on in (True, False):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"output_dir={tmp_path}", "logger=none", f"draft={draft}",
                                              "draft.draft_vocab_size=null", f"draft.self_attend_init={on}"])  # fmt: skip
        torch.manual_seed(0)
        head = build_draft(to_typed(cfg), target)
        c = head.config
        share[on] = _self_share_of(head.layers[0].self_attn, c.num_heads, c.num_kv_heads, c.head_dim,
                                   2 * c.hidden_size)  # fmt: skip
    assert share[True] > 0.9 and share[False] < 0.7, share
