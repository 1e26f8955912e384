"""Exports in the engines' layouts: round trips (identical tensors and logits), refusals, the README card,
the CLI, and HF assisted generation with an exported dense draft."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.conftest import TINY_LLAMA
from train.drafts.dense.head import DenseDraft, DenseDraftConfig
from train.drafts.eagle.head import EagleHead, EagleHeadConfig
from train.drafts.eagle3.head import Eagle3Head, Eagle3HeadConfig
from train.drafts.io import load_draft, save_draft
from train.drafts.medusa.head import MedusaHeadConfig, MedusaHeads
from train.export import export_draft, import_draft, main
from train.export_formats.common import ExportError
from train.modeling.target import FrozenTarget

DIMS = {"hidden_size": 256, "intermediate_size": 128, "num_heads": 4, "num_kv_heads": 2, "head_dim": 64}
V, DV = 4096, 300


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


def _randomize(head: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter distinct (norms too), so a swapped or dropped tensor changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if p.dim() == 1 else 0.0))
    return head.eval()


def build(kind: str, target: FrozenTarget) -> torch.nn.Module:
    if kind == "eagle":
        cfg = EagleHeadConfig(**DIMS, vocab_size=V, first_layer_input_norm=False, fc_bias=False)
        return _randomize(EagleHead(cfg))
    if kind in ("eagle3", "scylla", "eagle3-draftforge", "eagle3-speculators-defaults"):
        cfg = Eagle3HeadConfig(
            **DIMS, vocab_size=V, draft_vocab_size=DV, feature_layers=[1, 2, 3],
            num_layers=2 if kind == "scylla" else 1, architecture=kind.split("-")[0],
            layout="draftforge" if kind.endswith("draftforge") else "eagle3",
            # speculators 0.9.0's trainer defaults (vLLM loads both switches)
            norm_before_residual=kind.endswith("defaults"), norm_before_fc=kind.endswith("defaults"),
        )  # fmt: skip
        head = _randomize(Eagle3Head(cfg))
        head.d2t.copy_(torch.randperm(V, generator=torch.Generator().manual_seed(1))[:DV].sort().values)
        return head
    if kind.startswith("medusa"):
        shared = kind == "medusa-shared"
        heads = _randomize(
            MedusaHeads(MedusaHeadConfig(256, V, num_heads=3, num_layers=1, share_lm_head=shared))
        )
        return heads
    if kind == "dense":
        hf = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": V,
              "eos_token_id": 0, "pad_token_id": 0, "tie_word_embeddings": False}  # fmt: skip
        return _randomize(DenseDraft(DenseDraftConfig(vocab_size=V, hf_config=hf)))
    raise ValueError(kind)


def our_export(head: torch.nn.Module, target: FrozenTarget, out: Path, **meta: object) -> Path:
    info = {**target.fingerprint(), "stage": "pretrain", "steps": 12, "tokens_seen": 24576, **meta}
    return save_draft(head.state_dict(), head.config, out, info)


@torch.no_grad()
def logits(head: torch.nn.Module, target: FrozenTarget) -> torch.Tensor:
    """What eval reads from a head on one fixed batch."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, V, (2, 7), generator=g)
    emb = target.embed(ids)
    if isinstance(head, EagleHead):
        return head.logits(head(emb, torch.randn(2, 7, 256, generator=g)), target.lm_head)
    if isinstance(head, Eagle3Head):
        return head.logits(head(emb, layer_features=torch.randn(2, 7, 768, generator=g)))
    if isinstance(head, MedusaHeads):
        return head.logits(head(torch.randn(2, 7, 256, generator=g)), target.lm_head)
    return head(ids)


ROUND_TRIPS = [
    ("eagle", "eagle"),
    ("eagle3", "eagle3-sglang"),
    ("eagle3", "speculators"),
    ("scylla", "speculators"),
    ("eagle3-speculators-defaults", "speculators"),
    ("medusa-own", "medusa"),
    ("medusa-shared", "medusa"),
    ("dense", "hf-dense"),
]


@pytest.mark.parametrize(("kind", "fmt"), ROUND_TRIPS)
def test_round_trip_gives_identical_tensors_and_logits(
    kind: str, fmt: str, target: FrozenTarget, tmp_path: Path
) -> None:
    head = build(kind, target)
    src = our_export(head, target, tmp_path / "ours")
    exported = export_draft(src, fmt, tmp_path / fmt)
    back = import_draft(exported, tmp_path / "back", None, str(TINY_LLAMA))  # format detected
    again, meta = load_draft(back, target.fingerprint(), target.vocab_size)
    a, b = head.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert torch.equal(logits(head, target), logits(again.eval(), target))
    assert meta["tokens_seen"] == 24576 and meta["imported_format"] == fmt  # provenance survives


def test_refuses_a_target_with_another_tokenizer(target: FrozenTarget, tmp_path: Path) -> None:
    src = our_export(
        build("eagle3", target), target, tmp_path / "ours", tokenizer_fingerprint="0123456789abcdef"
    )
    with pytest.raises(ExportError, match="tokenizer 0123456789abcdef"):
        export_draft(src, "eagle3-sglang", tmp_path / "x", str(TINY_LLAMA))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("kind", "fmt", "tensor"),
    [
        ("eagle3-draftforge", "eagle3-sglang", "input_proj.weight"),
        ("eagle3-draftforge", "speculators", "input_proj.weight"),
        ("scylla", "eagle3-sglang", "layers.1."),
        ("eagle3-speculators-defaults", "eagle3-sglang", "norm_before_residual"),
        ("eagle3", "eagle", "EAGLE-1/2 heads"),
        ("eagle3", "medusa", "Medusa heads"),
    ],
)
def test_refuses_heads_a_format_cannot_hold(
    kind: str, fmt: str, tensor: str, target: FrozenTarget, tmp_path: Path
) -> None:
    src = our_export(build(kind, target), target, tmp_path / "ours")
    with pytest.raises(ExportError, match=tensor):
        export_draft(src, fmt, tmp_path / "x")


def test_eagle_layout_needs_no_layer0_input_norm(target: FrozenTarget, tmp_path: Path) -> None:
    head = EagleHead(
        EagleHeadConfig(**DIMS, vocab_size=V, first_layer_input_norm=True)
    )  # layer 0 keeps its norm
    with pytest.raises(ExportError, match=r"layers\.0\.input_layernorm\.weight"):
        export_draft(our_export(head, target, tmp_path / "ours"), "eagle", tmp_path / "x")


def test_eagle_layout_refuses_a_fc_bias_and_writes_bias_false(target: FrozenTarget, tmp_path: Path) -> None:
    """vLLM and SGLang read config "bias" as attention biases (train/drafts/eagle/export.py): a non-zero fc
    bias cannot be written exactly; a zero one is dropped and "bias" is false for every loader."""
    head = _randomize(EagleHead(EagleHeadConfig(**DIMS, vocab_size=V, fc_bias=True)))  # our earlier head
    with pytest.raises(ExportError, match=r"fc\.bias is non-zero.*draft\.fc_bias=false"):
        export_draft(our_export(head, target, tmp_path / "biased"), "eagle", tmp_path / "x")
    with torch.no_grad():
        head.fc.bias.zero_()
    folder = export_draft(our_export(head, target, tmp_path / "zero"), "eagle", tmp_path / "y")
    assert json.loads((folder / "config.json").read_text())["bias"] is False
    assert "fc.bias" not in load_file(str(folder / "model.safetensors"))
    back, _ = load_draft(import_draft(folder, tmp_path / "back"))
    assert back.fc.bias is None
    torch.testing.assert_close(logits(back, target), logits(head, target), rtol=0, atol=0)


def test_readme_card_has_provenance_and_tau_from_sibling_eval(target: FrozenTarget, tmp_path: Path) -> None:
    src = our_export(build("eagle3", target), target, tmp_path / "run" / "export")
    (tmp_path / "run" / "eval").mkdir()
    (tmp_path / "run" / "eval" / "results.json").write_text(json.dumps({"metrics": {"all": {"tau": 2.345}}}))
    card = (export_draft(src, "speculators", tmp_path / "spec") / "README.md").read_text()
    fp = target.fingerprint()["tokenizer_fingerprint"]
    for text in (str(TINY_LLAMA), fp, "pretrain", "24576", "2.345", "vllm serve"):
        assert text in card, text


def test_cli_export_and_import(target: FrozenTarget, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = our_export(build("eagle", target), target, tmp_path / "ours")
    main(["--draft", str(src), "--format", "eagle", "--out", str(tmp_path / "e"), "--dtype", "bfloat16"])
    main(
        [
            "--import",
            "--draft",
            str(tmp_path / "e"),
            "--out",
            str(tmp_path / "back"),
            "--target",
            str(TINY_LLAMA),
        ]
    )
    head, _ = load_draft(tmp_path / "back")
    assert isinstance(head, EagleHead) and not head.config.first_layer_input_norm
    with pytest.raises(SystemExit, match="refused"):
        main(["--draft", str(src), "--format", "medusa", "--out", str(tmp_path / "m")])


def test_exported_dense_draft_assists_hf_generate(target: FrozenTarget, tmp_path: Path) -> None:
    src = our_export(build("dense", target), target, tmp_path / "ours")
    folder = export_draft(src, "hf-dense", tmp_path / "hf")
    draft = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    draft.generation_config.num_assistant_tokens = 3  # a short draft chain keeps the CPU test quick
    model = target.model
    ids = target.tokenizer("def parse(", return_tensors="pt").input_ids
    kw = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    plain = model.generate(ids, **kw)
    assisted = model.generate(ids, assistant_model=draft, **kw)
    assert torch.equal(plain, assisted)  # greedy assisted generation is lossless


def test_importer_refuses_layer_ids_that_do_not_match(target: FrozenTarget, tmp_path: Path) -> None:
    """A folder whose layer ids were rewritten (or are read in another engine's numbering) is refused."""
    folder = export_draft(
        our_export(build("eagle3", target), target, tmp_path / "ours"), "speculators", tmp_path / "s"
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg["eagle_aux_hidden_state_layer_ids"] = [0, 1, 2]  # SGLang's numbering, read as vLLM's
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match=r"trained on \[1, 2, 3\]"):
        import_draft(folder, tmp_path / "back")
    cfg["eagle_aux_hidden_state_layer_ids"] = [2, 3, 4]  # hidden_states[4] is the output, not capturable
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="does not match this target"):
        import_draft(folder, tmp_path / "back", None, str(TINY_LLAMA))


def test_importer_refuses_a_speculators_head_that_feeds_back_the_normed_state(
    target: FrozenTarget, tmp_path: Path
) -> None:
    """speculators 0.9 trains EAGLE-3 with norm_output=true by default; our drafter would feed the head the
    pre-norm state instead, so such a checkpoint is refused rather than imported into a different drafter."""
    folder = export_draft(
        our_export(build("eagle3", target), target, tmp_path / "ours"), "speculators", tmp_path / "s"
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg["norm_output"] = False  # written by speculators' --no-norm-output: imported
    (folder / "config.json").write_text(json.dumps(cfg))
    import_draft(folder, tmp_path / "back")
    cfg["norm_output"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="norm_output=true.*--no-norm-output"):
        import_draft(folder, tmp_path / "back2")
