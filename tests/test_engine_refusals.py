"""Refusals that the engine tests (tests/test_vllm_engine.py) only reached behind a vLLM install, tested
without one: an EAGLE-3 head cannot be exported for a target with three decoder layers (the engines capture
three distinct layers among hidden_states[1..n-1]), and eval's vLLM backend refuses an eagle3-sglang folder
(vLLM would read its layer ids without SGLang's +1) instead of serving it wrong. Heads are built through the
public config path (Hydra compose -> train.draft_factory)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, register_resolvers
from eval.vllm_backend.run import VllmMismatch, prepare
from tests.conftest import TINY_LLAMA, TINY_QWEN2
from train.config import to_typed
from train.draft_factory import build_draft
from train.drafts.io import save_draft
from train.export import export_draft
from train.export_formats.common import ExportError
from train.modeling.target import FrozenTarget

register_resolvers()
# The layouts each head exports to (a 2-layer Scylla head has no place in the one-midlayer SGLang layout).
FORMATS = {"eagle3": ("speculators", "eagle3-sglang"), "scylla": ("speculators",)}


def export_of(draft: str, target_dir: Path, out: Path) -> Path:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"output_dir={out}", "logger=none", f"draft={draft}",
                                          f"target.name_or_path={target_dir}", "draft.draft_vocab_size=null"])  # fmt: skip
    target = FrozenTarget.load(str(target_dir))
    head = build_draft(to_typed(cfg), target)
    return save_draft(
        head.state_dict(), head.config, out / "export", {**target.fingerprint(), "stage": "test"}
    )


@pytest.mark.parametrize("draft", ["eagle3", "scylla"])
def test_a_three_layer_target_is_refused_for_every_eagle3_layout(draft: str, tmp_path: Path) -> None:
    src = export_of(draft, TINY_QWEN2, tmp_path / "qwen2")
    for fmt in FORMATS[draft]:
        with pytest.raises(
            ExportError, match=rf"{fmt}: .*(exactly 3 feature_layers|repeat a layer|not capturable)"
        ):
            export_draft(src, fmt, tmp_path / f"qwen2-{fmt}", str(TINY_QWEN2))
        assert not (tmp_path / f"qwen2-{fmt}").exists()
    # The same head on the 4-layer target exports to both (the refusal is about the layers, not the head).
    ok = export_of(draft, TINY_LLAMA, tmp_path / "llama")
    for fmt in FORMATS[draft]:
        assert (export_draft(ok, fmt, tmp_path / f"llama-{fmt}", str(TINY_LLAMA)) / "config.json").is_file()


def test_the_vllm_backend_refuses_an_eagle3_sglang_folder(tmp_path: Path) -> None:
    src = export_of("eagle3", TINY_LLAMA, tmp_path / "ours")
    sglang = export_draft(src, "eagle3-sglang", tmp_path / "sglang", str(TINY_LLAMA))
    with pytest.raises(
        VllmMismatch, match=r"eagle3-sglang folder: vLLM reads its layer ids without SGLang's \+1"
    ):
        prepare(str(sglang), str(TINY_LLAMA), tmp_path / "served")
    # The speculators folder of the same head is taken (imported for our engine, served as is).
    speculators = export_draft(src, "speculators", tmp_path / "spec", str(TINY_LLAMA))
    ours, served, method = prepare(str(speculators), str(TINY_LLAMA), tmp_path / "served")
    assert (served, method) == (str(speculators), "eagle3") and Path(ours, "config.json").is_file()
