"""DFlash parts called directly (train/drafts/dflash/, eval/drafters/dflash.py) on the shipped tiny target:
the block masks, the many-anchors training forward against one block at a time, the drafter's cache against a
fresh forward, lossless decoding in our engine, and the vLLM-layout export round trip and its refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from eval.engine import Engine
from tests.conftest import TINY_LLAMA
from train.decoding.drafter import CHAIN, DraftSettings, NoDrafter
from train.decoding.sampling import Sampling
from train.drafts.dflash import blocks
from train.drafts.dflash import export_vllm as fmt
from train.drafts.dflash.config import DFlashConfig
from train.drafts.dflash.drafter import DFlashDrafter
from train.drafts.dflash.head import DFlashHead, DFlashHeadConfig
from train.drafts.dflash.objective import DFlashObjective
from train.export_formats.common import ExportError, Target
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget
from train.settings import StageConfig

BS = 4
LAYERS = [1, 2, 3]


def settings(**draft: object) -> SimpleNamespace:
    """What an objective reads of a run config: the stage (pretrain's defaults) and the draft config."""
    return SimpleNamespace(stage=StageConfig(), draft=DFlashConfig(block_size=BS, **draft))


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


def feats(target: FrozenTarget, ids: torch.Tensor):  # noqa: ANN201 - TargetFeatures
    return target.features(ids, layers=LAYERS)


def random_head(target: FrozenTarget, num_layers: int = 2, seed: int = 0, mask_id: int = 0) -> DFlashHead:
    """Every tensor random (norms too), so a dropped or misplaced one changes the output."""
    torch.manual_seed(seed)
    dims = attention_dims(target.model.config, num_layers, 96, num_kv_heads=2)
    head = DFlashHead(DFlashHeadConfig(**dims, vocab_size=target.vocab_size, feature_layers=LAYERS,
                                       block_size=BS, mask_token_id=mask_id))  # fmt: skip
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 1.0) + (1.0 if p.ndim == 1 else 0.0))
    return head.eval()


def ids_of(target: FrozenTarget, text: str) -> torch.Tensor:
    return target.tokenizer(text, return_tensors="pt").input_ids


TEXT = "The json module can serialize Python objects to strings and read them back into objects again."


def test_block_mask_sees_exactly_the_context_before_its_anchor_and_its_own_block() -> None:
    anchors, valid = torch.tensor([[2, 5, 9]]), torch.tensor([[True, True, False]])
    t = 12
    docs = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]])
    for doc in (None, docs):
        m = blocks.block_attention_mask(anchors, valid, t, BS, doc)[0, 0]
        assert m.shape == (3 * BS, t + 3 * BS)
        for q in range(3 * BS):
            j = q // BS
            a = int(anchors[0, j])
            for kv in range(t + 3 * BS):
                if kv < t:
                    want = bool(valid[0, j]) and kv < a and (doc is None or doc[0, kv] == doc[0, a])
                else:
                    want = (kv - t) // BS == j
                assert bool(m[q, kv]) == want, (doc is not None, q, kv)


def test_slot_targets_and_anchor_candidates() -> None:
    tokens = torch.tensor([[5, 6, 0, 7, 8, 9, 10]])  # 0 = the mask id: never an anchor
    loss = torch.tensor([[0, 0, 1, 1, 1, 0, 1]])
    cand = blocks.anchor_candidates(loss, tokens, mask_token_id=0)
    # a >= 1, token a+1 trained, token a not the mask id, a+1 inside the row
    assert cand[0].tolist() == [False, True, False, True, False, True, False]
    anchors, valid = torch.tensor([[1, 5]]), torch.tensor([[True, True]])
    src, ok = blocks.slot_targets(anchors, valid, loss, BS)
    # anchor 1: slots predict tokens 2, 3, 4 from logits 1, 2, 3; anchor 5: token 6 (trained), 7 and 8 past the row
    assert src[0].tolist() == [0, 1, 2, 3, 4, 5, 5, 5]  # past the row: clamped, and masked
    assert ok[0].tolist() == [False, True, True, True, False, True, False, False]
    w = blocks.position_weights(BS, gamma=2.0)
    assert torch.allclose(w, torch.tensor([0.0, 1.0, math.exp(-0.5), math.exp(-1.0)]))
    a, v = blocks.select_anchors(torch.tensor([[False, True, True, False, True]]), max_anchors=2)
    assert v.all() and a[0].tolist() == sorted(a[0].tolist()) and set(a[0].tolist()) <= {1, 2, 4}


def one_block(head: DFlashHead, target: FrozenTarget, ids: torch.Tensor, feats: torch.Tensor, a: int):
    """Logits of the block anchored at a, run alone with the context features[:a] (what decoding sees)."""
    toks = torch.full((1, BS), head.config.mask_token_id)
    toks[0, 0] = ids[0, a]
    mask = torch.ones(1, 1, BS, a + BS, dtype=torch.bool)
    out = head(toks, target.embed(toks), torch.arange(a, a + BS)[None], mask,
               layer_features=feats[:, :a], context_positions=torch.arange(a)[None])  # fmt: skip
    return head.logits(out, target.lm_head)


@torch.no_grad()
def test_many_anchors_in_one_pass_equal_each_block_alone(target: FrozenTarget) -> None:
    """The training forward (all anchors, block mask) gives each block the logits it gets alone at decode
    time; a block's logits do not move when context at or after its anchor changes."""
    head = random_head(target)
    ids = ids_of(target, TEXT)
    f = feats(target, ids)
    t = ids.shape[1]
    anchors = torch.tensor([[1, 4, 7, t - 2]])
    valid = torch.ones_like(anchors, dtype=torch.bool)
    toks = torch.full((1, anchors.shape[1] * BS), head.config.mask_token_id)
    toks[:, ::BS] = ids.gather(1, anchors)
    pos, _ = blocks.block_layout(anchors, BS)
    mask = blocks.block_attention_mask(anchors, valid, t, BS)
    out = head(
        toks, target.embed(toks), pos, mask, layer_features=f.layers, context_positions=torch.arange(t)[None]
    )
    many = head.logits(out, target.lm_head).view(anchors.shape[1], BS, -1)
    for j, a in enumerate(anchors[0].tolist()):
        torch.testing.assert_close(
            many[j], one_block(head, target, ids, f.layers, a)[0], rtol=1e-4, atol=1e-4
        )
    # the context mask in use: features at and after anchor 4 are not read by block 1, earlier ones are
    later = f.layers.clone()
    later[:, 4:] += 1.0
    torch.testing.assert_close(
        one_block(head, target, ids, later, 4), one_block(head, target, ids, f.layers, 4)
    )
    earlier = f.layers.clone()
    earlier[:, 2] += 1.0
    assert not torch.allclose(
        one_block(head, target, ids, earlier, 4), one_block(head, target, ids, f.layers, 4)
    )


@torch.no_grad()
def test_drafter_with_its_cache_equals_a_fresh_forward(target: FrozenTarget) -> None:
    """The drafter commits context into its cache step by step, over a ragged batch; each proposal must be
    the argmax of a fresh one-block forward over the row's whole verified context."""
    head = random_head(target)
    drafter = DFlashDrafter(head, target)
    ids = ids_of(target, TEXT)
    f = feats(target, ids)
    settings = DraftSettings(mode=CHAIN, draft_length=BS - 1)
    drafter.start(2)
    cut = [6, 9]  # row 0 has seen 6 tokens, row 1 nine (right-padded)
    valid = torch.arange(9)[None] < torch.tensor(cut)[:, None]
    drafter.observe(torch.cat([ids[:, :9]] * 2), torch.cat([f.layers[:, :9]] * 2), valid)
    tree = drafter.propose(ids[0, cut], settings, None)
    for r, c in enumerate(cut):
        want = one_block(head, target, ids, f.layers, c)[0, 1:].argmax(-1)
        assert tree.tokens[r].tolist() == want.tolist()
    # next step: row 0 verifies 3 more positions, row 1 one more (padded); the cache holds the rest
    step = torch.stack([ids[0, 6:9], torch.cat([ids[0, 9:10], ids[0, :2]])])
    sfeat = torch.stack([f.layers[0, 6:9], torch.cat([f.layers[0, 9:10], f.layers[0, :2]])])
    drafter.observe(step, sfeat, torch.tensor([[True] * 3, [True, False, False]]))
    tree = drafter.propose(torch.stack([ids[0, 9], ids[0, 10]]), settings, None)
    for r, c in enumerate((9, 10)):
        want = one_block(head, target, ids, f.layers, c)[0, 1:].argmax(-1)
        assert tree.tokens[r].tolist() == want.tolist()
    with pytest.raises(ValueError, match="draft_length=4"):
        drafter.propose(ids[0, :2], DraftSettings(mode=CHAIN, draft_length=BS), None)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_engine_with_dflash_is_lossless(target: FrozenTarget, temperature: float) -> None:
    """Greedy: token for token the target's own output, over a ragged batch. Sampling: runs with the drafted
    chains' q recorded (the engine's verifier needs it) and emits real tokens."""
    head = random_head(target, mask_id=0)
    prompts = [ids_of(target, s)[0].tolist() for s in ("The json module", "Lists are mutable sequences, and")]
    settings = DraftSettings(mode=CHAIN, draft_length=BS - 1, sampling=Sampling(temperature))
    eos = {0}
    spec = Engine(target, DFlashDrafter(head, target), settings, eos).generate(
        prompts, 24, torch.Generator().manual_seed(0)
    )
    assert sum(s for r in spec.rows for s in r.drafted) > 0
    if temperature == 0.0:
        base = Engine(target, NoDrafter(), settings, eos).generate(prompts, 24)
        assert [r.tokens for r in spec.rows] == [r.tokens for r in base.rows]


@torch.no_grad()
def test_objective_trains_and_reports_per_slot(target: FrozenTarget) -> None:
    head = random_head(target, num_layers=1)
    ids = ids_of(target, TEXT)
    obj = DFlashObjective(settings(max_anchors=8))
    out = obj(head, target, ids, feats(target, ids), torch.ones_like(ids), training=True)
    assert torch.isfinite(out.loss) and out.stats["count"] == 8
    assert {f"slot{i}/count" for i in range(1, BS)} <= set(out.stats)
    assert 8 <= out.stats["accept_len_sum"] <= 8 * BS


def test_export_round_trip_and_every_tensor_written(target: FrozenTarget, tmp_path: Path) -> None:
    head = random_head(target)
    tgt = Target.load(str(TINY_LLAMA))
    notes = fmt.export(head, {}, tmp_path / "v", tgt, "float32")
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    assert cfg["architectures"] == ["DFlashDraftModel"] and cfg["block_size"] == BS
    assert cfg["dflash_config"] == {"mask_token_id": 0, "target_layer_ids": [i - 1 for i in LAYERS]}
    assert any('"method": "dflash"' in n and '"num_speculative_tokens": 3' in n for n in notes)
    back, _ = fmt.load(tmp_path / "v", tgt)
    for k, v in head.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, msg=k)
    assert fmt.matches(tmp_path / "v")
    # a published checkpoint without a tensor is refused (vLLM would leave it uninitialised, silently)
    w = load_file(str(tmp_path / "v" / "model.safetensors"))
    del w["layers.1.self_attn.k_norm.weight"]
    save_file(w, str(tmp_path / "v" / "model.safetensors"))
    with pytest.raises(ExportError, match="missing \\['layers.1.self_attn.k_norm.weight'\\]"):
        fmt.load(tmp_path / "v", tgt)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"block_size": 1}, "block_size=1"), ({"feature_layers": [1, 2, 4]}, "target_layer_ids"),
     ({"feature_layers": [0, 1, 2]}, "target_layer_ids"), ({"feature_layers": [2, 1, 3]}, "ascending"),
     ({"mask_token_id": 4096}, "mask_token_id=4096")],
)  # fmt: skip
def test_export_refuses_what_vllm_would_misread(
    target: FrozenTarget, tmp_path: Path, change: dict, key: str
) -> None:
    head = random_head(target)
    for k, v in change.items():
        setattr(head.config, k, v)
    with pytest.raises(ExportError, match=key) as err:
        fmt.export(head, {}, tmp_path / "v", Target.load(str(TINY_LLAMA)), "float32")
    assert "\n" not in str(err.value)
