"""P-EAGLE parts called directly (train/drafts/peagle/) on the shipped tiny target: the slot masks, the
one-pass training forward against the drafter's one forward per step (they must agree: both are what vLLM
drafts), lossless decoding in our engine (chains in one forward, trees step by step), and the speculators
export round trip and its refusals."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from eval.engine import Engine
from tests.conftest import TINY_LLAMA
from train.decoding.drafter import CHAIN, TREE, DraftSettings, NoDrafter
from train.decoding.sampling import Sampling
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.drafts.eagle3.layers import default_layers
from train.drafts.peagle import export_speculators as fmt
from train.drafts.peagle.config import PEagleConfig
from train.drafts.peagle.drafter import PEagleDrafter
from train.drafts.peagle.head import PEagleHead, PEagleHeadConfig
from train.drafts.peagle.objective import PEagleObjective, parallel_attention_mask
from train.export_formats.common import ExportError, Target
from train.modeling.draft.dims import attention_dims
from train.modeling.target import FrozenTarget
from train.settings import StageConfig

K = 3
TEXT = "The json module can serialize Python objects to strings and read them back into objects again."


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


def random_head(target: FrozenTarget, seed: int = 0, reduced: bool = True, k: int = K) -> PEagleHead:
    """Every tensor random (norms and mask_hidden too), so a dropped or misplaced one changes the output;
    `reduced`: a draft vocabulary of half the target's, in shuffled order (d2t is exercised)."""
    torch.manual_seed(seed)
    v = target.vocab_size
    dims = attention_dims(target.model.config, 1, 96)
    cfg = PEagleHeadConfig(**dims, vocab_size=v, draft_vocab_size=v // 2 if reduced else v,
                           feature_layers=default_layers(target.num_layers), layout="eagle3",
                           mask_token_id=7, parallel_tokens=k)  # fmt: skip
    head = PEagleHead(cfg)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 1.0) + (1.0 if p.ndim == 1 else 0.0))
        if reduced:
            head.d2t.copy_(torch.randperm(v)[: v // 2])
    return head.eval()


def feats(target: FrozenTarget, head: PEagleHead, ids: torch.Tensor):  # noqa: ANN201 - TargetFeatures
    return target.features(ids, layers=tuple(head.config.feature_layers))


def objective(k: int = K) -> PEagleObjective:
    return PEagleObjective(SimpleNamespace(stage=StageConfig(), draft=PEagleConfig(ttt_steps=k)))


def test_slot_mask_sees_the_verified_prefix_and_its_own_earlier_slots() -> None:
    length = 5
    first = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
    m = parallel_attention_mask(length, K, first)[0, 0]
    assert m.shape == (K * length, K * length)
    for q in range(K * length):
        j, t = divmod(q, length)
        for kv in range(K * length):
            jk, tk = divmod(kv, length)
            want = tk <= t if jk == 0 else (tk == t and 1 <= jk <= j)
            assert bool(m[q, kv]) == want, (q, kv)


@torch.no_grad()
def test_one_pass_training_equals_the_drafters_one_forward(target: FrozenTarget) -> None:
    """The training forward (all anchors, all slots at once) gives each anchor the slot logits the drafter
    computes from the same verified prefix at decode time, over a ragged batch whose cache grows step by step:
    greedy drafts equal the argmax of the training logits (mapped through d2t)."""
    head = random_head(target)
    ids = torch.tensor(target.tokenizer(TEXT).input_ids)[None]
    f = feats(target, head, ids)
    logits = objective().slot_logits(head, head, target, ids, f)[0]  # (K, L, V_draft)
    want = head.d2t[logits.argmax(-1)]  # (K, L): slot j's token for the block anchored at t
    drafter = PEagleDrafter(head, target)
    drafter.start(2)
    settings = DraftSettings(mode=CHAIN, draft_length=K)
    cut = [6, 9]  # row 0 has read 6 tokens, row 1 nine (right-padded)
    valid = torch.arange(9)[None] < torch.tensor(cut)[:, None]
    drafter.observe(torch.cat([ids[:, :9]] * 2), torch.cat([f.layers[:, :9]] * 2), valid)
    tree = drafter.propose(ids[0, cut], settings, None)
    for r, c in enumerate(cut):  # root = token c, read with the features at c - 1: anchor c - 1
        assert tree.tokens[r].tolist() == want[:, c - 1].tolist(), r
    # next step: row 0 verifies 3 more tokens, row 1 one more (padded); the cache holds the rest
    step = torch.stack([ids[0, 6:9], torch.cat([ids[0, 9:10], ids[0, :2]])])
    sfeat = torch.stack([f.layers[0, 6:9], torch.cat([f.layers[0, 9:10], f.layers[0, :2]])])
    drafter.observe(step, sfeat, torch.tensor([[True] * 3, [True, False, False]]))
    tree = drafter.propose(torch.stack([ids[0, 9], ids[0, 10]]), settings, None)
    for r, c in enumerate((9, 10)):
        assert tree.tokens[r].tolist() == want[:, c - 1].tolist(), r
    with pytest.raises(ValueError, match=f"draft_length={K + 1}"):
        drafter.propose(ids[0, :2], DraftSettings(mode=CHAIN, draft_length=K + 1), None)


@pytest.mark.parametrize(("mode", "temperature"), [(CHAIN, 0.0), (CHAIN, 1.0), (TREE, 0.0)])
def test_engine_with_peagle_is_lossless(target: FrozenTarget, mode: str, temperature: float) -> None:
    """Greedy: token for token the target's own output, over a ragged batch, drafting chains in one forward
    or trees step by step. Sampling: runs with each slot's q recorded and emits real tokens."""
    head = random_head(target)
    prompts = [target.tokenizer(s).input_ids for s in ("The json module", "Lists are mutable sequences, and")]
    settings = DraftSettings(mode=mode, draft_length=K, sampling=Sampling(temperature))
    spec = Engine(target, PEagleDrafter(head, target), settings, {0}).generate(
        prompts, 20, torch.Generator().manual_seed(0)
    )
    assert sum(s for r in spec.rows for s in r.drafted) > 0
    if temperature == 0.0:
        base = Engine(target, NoDrafter(), settings, {0}).generate(prompts, 20)
        assert [r.tokens for r in spec.rows] == [r.tokens for r in base.rows]


def test_objective_trains_every_slot(target: FrozenTarget) -> None:
    head = random_head(target)
    ids = torch.tensor(target.tokenizer(TEXT).input_ids)[None]
    out = objective()(head, target, ids, feats(target, head, ids), torch.ones_like(ids), training=True)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert head.mask_hidden.grad is not None and head.mask_hidden.grad.abs().sum() > 0
    length = ids.shape[1] - 1
    assert [float(out.stats[f"step{j}/count"]) for j in range(K)] == [length - j for j in range(K)]


def test_export_round_trip(target: FrozenTarget, tmp_path: Path) -> None:
    head = random_head(target)
    tgt = Target.load(str(TINY_LLAMA))
    notes = fmt.export(head, {}, tmp_path / "v", tgt, "float32")
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    assert cfg["speculators_model_type"] == "peagle" and cfg["mask_token_id"] == 7
    assert cfg["eagle_aux_hidden_state_layer_ids"] == head.config.feature_layers
    assert cfg["speculators_config"]["proposal_methods"][0]["speculative_tokens"] == K
    assert any('"method": "eagle3"' in n and '"parallel_drafting": true' in n for n in notes)
    assert fmt.matches(tmp_path / "v")
    back, _ = fmt.load(tmp_path / "v", tgt)
    assert back.config.to_dict() == head.config.to_dict()
    for k, v in head.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, msg=k)


@pytest.mark.parametrize(
    ("make", "key"),
    [("eagle3", "not trained for parallel drafting"), ("k1", "not trained for parallel drafting"),
     ("mask4096", "mask_token_id=4096")],
)  # fmt: skip
def test_export_refuses_what_vllm_would_misread(
    target: FrozenTarget, tmp_path: Path, make: str, key: str
) -> None:
    head: torch.nn.Module = random_head(target)
    if make == "eagle3":
        base = {
            k: v for k, v in head.config.to_dict().items() if k not in ("mask_token_id", "parallel_tokens")
        }
        head = Eagle3Head(Eagle3HeadConfig(**base))
    elif make == "k1":
        head.config.parallel_tokens = 1
    else:
        head.config.mask_token_id = 4096
    with pytest.raises(ExportError, match=key) as err:
        fmt.export(head, {}, tmp_path / "v", Target.load(str(TINY_LLAMA)), "float32")
    assert "\n" not in str(err.value)
