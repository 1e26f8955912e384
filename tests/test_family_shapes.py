"""Real-family target shapes (tests/families.py) through every stage: the draft rotates positions exactly as
the target does (llama3 scaling included), trains, exports in each engine layout, imports back unchanged,
and decodes losslessly, with len(tokenizer) below the embedding's rows."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from data.paths import CONF_DIR, register_resolvers
from data.tracking import LoggerConfig
from eval.config import EvalConfig, PromptsConfig, TreeConfig
from eval.run import evaluate
from tests.families import REAL_CONFIGS, build_family_target
from train.config import to_typed
from train.drafts.eagle.head import EagleHead, EagleHeadConfig
from train.drafts.io import load_draft, save_draft
from train.export import export_draft, import_draft
from train.modeling.draft.layers import Rotary, target_rope
from train.modeling.target import FrozenTarget, TargetConfig
from train.trainer import run

register_resolvers()
FAMILIES = list(REAL_CONFIGS)
POSITIONS = torch.tensor([[0, 1, 2, 31, 100, 2047, 4095, 8191, 9000, 30000, 131071]])
EAGLE3_FORMATS = ("eagle3-sglang", "speculators")  # every layout an EAGLE-3 head exports to


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    name = request.param
    return name, build_family_target(name, tmp_path_factory.mktemp("families") / name)


def _draft_rotary(config: object, head_dim: int) -> Rotary:
    return Rotary(head_dim, **target_rope(config))


def test_target_loads_with_fewer_tokens_than_rows_and_draft_rope_is_the_targets(family) -> None:
    name, folder = family
    target = FrozenTarget.load(str(folder))
    c = target.model.config
    assert len(target.tokenizer) < c.vocab_size == REAL_CONFIGS[name]["vocab_size"] == target.vocab_size
    head_dim = c.hidden_size // c.num_attention_heads
    want_cos, want_sin = target.model.model.rotary_emb(torch.zeros(1), POSITIONS)
    # From the loaded config and from config.json as published (rope_theta + rope_scaling keys): same tables.
    for source in (c, json.loads((folder / "config.json").read_text())):
        cos, sin = _draft_rotary(source, head_dim)(POSITIONS, torch.float32)
        assert torch.equal(cos[:, 0], want_cos) and torch.equal(sin[:, 0], want_sin), name
    scaled = REAL_CONFIGS[name].get("rope_scaling")
    assert target_rope(c)["rope_scaling"] == scaled  # None for plain RoPE: those head configs are unchanged


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_scaling": {"type": "linear", "factor": 4.0}},  # legacy spelling of rope_type
        {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
        {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}},
        {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}},
    ],
)  # fmt: skip
def test_every_rope_type_matches_transformers(rope: dict) -> None:
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=16384, **rope)
    want = LlamaRotaryEmbedding(config)(torch.zeros(1), POSITIONS)
    got = _draft_rotary(config, 16)(POSITIONS, torch.float32)
    assert torch.equal(got[0][:, 0], want[0]) and torch.equal(got[1][:, 0], want[1])


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _pretrain_eagle3(folder: Path, corpus: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A few pretraining steps in this process (a subprocess per family would cost ~30 s of start-up)."""
    overrides = [
        f"target.name_or_path={folder}", "draft=eagle3", "draft.layout=eagle3", "draft.draft_vocab_size=512",
        f"data.train_files=[{corpus}]", "data.valid_files=[]", "data.seq_len=64", "data.max_tokens=2048",
        "train.micro_batch_size=2", "train.max_steps=3", "train.eval_every=0", "train.save_every=3",
        "train.progress=false", "optim.warmup_steps=1", "deepspeed=none", "logger=none", f"output_dir={out}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose(config_name="train", overrides=overrides))
    # A world of one, restored after the test: later tests launch their own ranks.
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": _free_port()}.items():
        monkeypatch.setenv(key, value)
    run(cfg)
    return out / "export"


def _eval_lossless(target: FrozenTarget, draft: Path, out: Path) -> None:
    cfg = EvalConfig(
        target=TargetConfig(name_or_path=target.name_or_path),
        logger=LoggerConfig(name="none", mode="disabled"),
        draft_path=str(draft),
        prompts=PromptsConfig(num_prompts=1),
        tree=TreeConfig(depth=3, topk=2, budget=6),
        max_new_tokens=6,
        device="cpu",
        progress=False,
        output_dir=str(out),
    )
    result = evaluate(cfg, target=target)
    assert result.lossless and result.metrics["all"]["spec_tokens"] > 0


def _assert_same_head(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (b.config.rope_theta, b.config.rope_scaling) == (a.config.rope_theta, a.config.rope_scaling)


def test_pretrain_export_import_eval(family, small_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    name, folder = family
    target = FrozenTarget.load(str(folder))
    rope = target_rope(target.model.config)
    trained = _pretrain_eagle3(folder, small_corpus, tmp_path / "run", monkeypatch)
    head, _ = load_draft(trained, target.fingerprint(), target.vocab_size)
    assert head.config.rope_scaling == rope["rope_scaling"] and head.config.rope_theta == rope["rope_theta"]
    for fmt in EAGLE3_FORMATS:
        exported = export_draft(trained, fmt, tmp_path / fmt)
        if fmt == "eagle3-sglang":  # the published EAGLE-3 layout: Llama-3.1 drafts carry llama3 scaling
            assert json.loads((exported / "config.json").read_text())["rope_scaling"] == rope["rope_scaling"]
        back = import_draft(exported, tmp_path / f"{fmt}-back", None, str(folder))
        again, _ = load_draft(back, target.fingerprint(), target.vocab_size)
        _assert_same_head(head, again)
    _eval_lossless(target, back, tmp_path / "eval-eagle3")
    # EAGLE-1/2: untrained (training adds nothing the eagle3 run did not test), exported in its layout.
    c = target.model.config
    heads = c.num_attention_heads
    eagle_cfg = EagleHeadConfig(
        hidden_size=c.hidden_size, intermediate_size=c.intermediate_size, num_heads=heads,
        num_kv_heads=c.num_key_value_heads, head_dim=c.hidden_size // heads, vocab_size=target.vocab_size,
        first_layer_input_norm=False, fc_bias=False, **rope,
    )  # fmt: skip
    torch.manual_seed(0)
    eagle = EagleHead(eagle_cfg)
    ours = save_draft(eagle.state_dict(), eagle_cfg, tmp_path / "eagle", target.fingerprint())
    back = import_draft(export_draft(ours, "eagle", tmp_path / "eagle-export"), tmp_path / "eagle-back")
    again, _ = load_draft(back, target.fingerprint(), target.vocab_size)
    _assert_same_head(eagle, again)
    _eval_lossless(target, back, tmp_path / "eval-eagle")
