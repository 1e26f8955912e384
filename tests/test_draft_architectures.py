"""Draft heads: shapes, the training-time-test mask, reduced-vocabulary maps, and the scylla/eagle3 layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from data.draft_vocab import build_maps, load_vocab, save_vocab
from data.paths import CONF_DIR, register_resolvers
from tests.conftest import TINY_LLAMA
from tests.drafts import layers, quick
from train.config import to_typed
from train.draft_factory import build_draft
from train.drafts.eagle3.objective import Eagle3Objective, unrolled_attention_mask
from train.drafts.registry import SPECS
from train.modeling.target import FrozenTarget

register_resolvers()


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


def config(tmp_path: Path, *overrides: str):  # noqa: ANN201
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"output_dir={tmp_path}", "logger=none", *overrides])
    return to_typed(cfg)


def test_unrolled_mask_is_prefix_then_own_chain() -> None:
    m = unrolled_attention_mask(4, 2, torch.device("cpu"))[0, 0]
    assert m.shape == (4, 12)
    for t in range(4):
        assert m[t, :4].tolist() == [i <= t for i in range(4)]  # verified prefix, causal
        for step in (1, 2):
            assert m[t, 4 * step : 4 * step + 4].tolist() == [i == t for i in range(4)]  # its own chain only


@pytest.mark.parametrize("draft", ["eagle3", "scylla"])
def test_training_time_test_never_reads_the_future(draft: str, target: FrozenTarget, tmp_path: Path) -> None:
    cfg = config(tmp_path, f"draft={draft}", "draft.ttt_steps=3", "draft.draft_vocab_size=null")
    torch.manual_seed(0)
    head = build_draft(cfg, target).eval()
    obj = Eagle3Objective(cfg)
    ids = torch.randint(3, 4000, (2, 24))
    perturbed = ids.clone()
    cut = 14
    perturbed[:, cut:] = torch.randint(3, 4000, (2, 24 - cut))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        fused = layers(cfg, target.num_layers)
        a = obj.per_position(head, head, target, ids, target.features(ids, layers=fused), mask)
        b = obj.per_position(head, head, target, perturbed, target.features(perturbed, layers=fused), mask)
    for j, ((ce_a, _, _), (ce_b, _, _)) in enumerate(zip(a, b, strict=True)):
        safe = cut - 1 - j  # query t at step j reads tokens <= t+1+j and predicts the one after t+1+j
        torch.testing.assert_close(ce_a[:, :safe], ce_b[:, :safe], rtol=0, atol=1e-5, msg=f"step {j}")
        assert not torch.allclose(ce_a[:, safe + 1 :], ce_b[:, safe + 1 :]), (
            "perturbation had no effect at all"
        )


def test_scylla_depth_one_is_eagle3_layout(target: FrozenTarget, tmp_path: Path) -> None:
    e3 = build_draft(config(tmp_path, "draft=eagle3", "draft.draft_vocab_size=null"), target)
    sc = build_draft(
        config(tmp_path, "draft=scylla", "draft.num_layers=1", "draft.draft_vocab_size=null"), target
    )
    assert {k: v.shape for k, v in e3.state_dict().items()} == {
        k: v.shape for k, v in sc.state_dict().items()
    }
    deep = build_draft(
        config(tmp_path, "draft=scylla", "draft.num_layers=3", "draft.draft_vocab_size=null"), target
    )
    assert len(deep.layers) == 3


def test_reduced_vocabulary_round_trip(target: FrozenTarget, tmp_path: Path) -> None:
    counts = torch.arange(len(target.tokenizer)).flip(0).numpy()  # low ids most frequent
    d2t, t2d, coverage = build_maps(counts, 100, target.tokenizer.all_special_ids)
    assert d2t.tolist() == sorted(d2t.tolist()) and len(set(d2t.tolist())) == 100
    assert t2d.sum() == 100 and t2d[d2t].all() and 0 < coverage < 1
    assert set(target.tokenizer.all_special_ids) <= set(d2t.tolist())
    save_vocab(tmp_path / "v.safetensors", d2t, t2d, target.tokenizer, {"size": 100})
    d2t2, t2d2 = load_vocab(tmp_path / "v.safetensors", target.tokenizer)
    assert torch.equal(d2t, d2t2) and torch.equal(t2d, t2d2)
    other = type(target.tokenizer).from_pretrained(str(TINY_LLAMA))
    other.add_tokens(["<not_in_the_original>"])
    with pytest.raises(ValueError, match="built for tokenizer"):
        load_vocab(tmp_path / "v.safetensors", other)


def test_eagle3_head_maps_draft_ids_to_target_ids(target: FrozenTarget, tmp_path: Path) -> None:
    head = build_draft(config(tmp_path, "draft=eagle3", "draft.draft_vocab_size=512"), target)
    assert head.lm_head.weight.shape == (512, target.hidden_size)
    assert (tmp_path / "draft_vocab.safetensors").is_file()
    assert torch.equal(head.lm_head.weight, target.lm_head.weight[head.d2t])  # initialised from the target


def test_medusa_and_dense_shapes(target: FrozenTarget, tmp_path: Path) -> None:
    ids = torch.randint(3, 4000, (2, 16))
    feats = target.features(ids)
    medusa = build_draft(config(tmp_path, "draft=medusa", "draft.medusa_heads=3"), target)
    hidden = medusa(feats.hidden)
    assert hidden.shape == (3, 2, 16, target.hidden_size)
    # Zero-initialised residual blocks: every head starts as the target's own next-token prediction.
    torch.testing.assert_close(medusa.logits(hidden, target.lm_head)[0], feats.logits)
    dense = build_draft(config(tmp_path, "draft=dense", "draft.num_layers=1"), target)
    assert dense(ids).shape == (2, 16, target.vocab_size)
    assert dense.model.config.num_hidden_layers == 1


def test_chaining_from_a_mismatched_export_fails_clearly(target: FrozenTarget, tmp_path: Path) -> None:
    from train.drafts.io import save_draft

    head = build_draft(config(tmp_path, "draft=eagle"), target)
    meta = target.fingerprint()
    save_draft(head.state_dict(), head.config, tmp_path / "eagle_export", meta)
    ok = build_draft(config(tmp_path, "draft=eagle", f"stage.init_from={tmp_path / 'eagle_export'}"), target)
    assert all(
        torch.equal(a, b) for a, b in zip(head.state_dict().values(), ok.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError, match="'eagle' draft, but draft.name='medusa'"):
        build_draft(config(tmp_path, "draft=medusa", f"stage.init_from={tmp_path / 'eagle_export'}"), target)
    save_draft(head.state_dict(), head.config, tmp_path / "other", {**meta, "target_fingerprint": "0" * 16})
    with pytest.raises(ValueError, match="export was built for target"):
        build_draft(config(tmp_path, "draft=eagle", f"stage.init_from={tmp_path / 'other'}"), target)


@pytest.mark.parametrize("draft", sorted(SPECS))  # every registered name, aliases too
@pytest.mark.parametrize("stage", ["pretrain", "distill"])
def test_gradients_reach_only_the_draft(draft: str, stage: str, target: FrozenTarget, tmp_path: Path) -> None:
    from train.loss_seam import objective_for

    cfg = config(tmp_path, f"draft={draft}", f"stage={stage}", "stage.data_ce_weight=0.1", *quick(draft))
    torch.manual_seed(0)
    head = build_draft(cfg, target)
    ids = torch.randint(3, 4000, (2, 20))
    feats = target.features(ids, layers=layers(cfg, target.num_layers))
    out = objective_for(cfg)(head, target, ids, feats, torch.ones_like(ids), True)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(not p.requires_grad and p.grad is None for p in target.parameters()), (
        "the target got gradients"
    )
    trainable = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for _, p in trainable), [
        n for n, p in trainable if p.grad is None
    ]
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)


def test_vocab_cli_balance_keeps_a_small_sources_tokens(tmp_path: Path, small_corpus: Path) -> None:
    """A large corpus and a small chat set: counted together the chat's own words fall out of a small draft
    vocabulary; with --balance (each file weighed equally) they are kept."""
    import json

    from data.draft_vocab import main as vocab_main

    big, small = small_corpus, tmp_path / "small.jsonl"  # 16 documentation pages
    chat = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "zebra quokka"}]
    small.write_text(json.dumps({"messages": chat}) + "\n")
    tok = FrozenTarget.load(str(TINY_LLAMA)).tokenizer
    rare = set(tok("zebra quokka", add_special_tokens=False)["input_ids"])
    kept = {}
    for flag in ([], ["--balance"]):
        out = tmp_path / f"vocab{len(flag)}.safetensors"
        vocab_main(["--tokenizer", str(TINY_LLAMA), "--files", str(big), str(small), "--size", "64",
                    "--out", str(out), *flag])  # fmt: skip
        d2t, _ = load_vocab(out, tok)
        kept[bool(flag)] = rare & set(d2t.tolist())
    assert kept[True] == rare and kept[False] != rare


def test_vocab_from_data_configs_counts_trained_tokens_only(target: FrozenTarget) -> None:
    from data.blocks import build_blocks
    from data.draft_vocab import count_data_tokens
    from data.spec import load_data_config, split_spec

    tok = target.tokenizer
    counts = count_data_tokens("embedded-dialogues", tok)
    spec = split_spec(load_data_config("embedded-dialogues"), "train")
    assert spec is not None
    blocks = build_blocks(spec, tok)
    masked = blocks.input_ids.long()[blocks.loss_mask.bool()]
    assert counts.sum() == len(masked) < blocks.input_ids.numel()  # assistant tokens, not prompts or padding
    assert counts.tolist() == torch.bincount(masked, minlength=len(tok)).tolist()
    assert count_data_tokens("embedded-pydocs", tok, max_tokens=5000).sum() <= 5000
