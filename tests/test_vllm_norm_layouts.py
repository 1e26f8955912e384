"""speculators 0.9.0's default EAGLE-3 layout (norm_before_residual, norm_before_fc) as training switches:
a tiny run trained with `draft.norm_before_residual=true draft.norm_before_fc=true` exports a speculators
folder whose config says so, and the speculators library (real, in vLLM's environment) computes the same
logits from it as our head does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from eval.vllm_backend.runner import ENV_VAR, SPECULATORS_PROBE, run_script
from tests.conftest import TINY_LLAMA, run_train, short_run_overrides
from train.drafts.io import load_draft
from train.export import export_draft
from train.modeling.target import FrozenTarget

VLLM_PYTHON = os.environ.get(ENV_VAR, "")
LAYOUT = [
    "draft=eagle3",
    "draft.layout=eagle3",
    "draft.norm_before_residual=true",
    "draft.norm_before_fc=true",
]


@pytest.fixture(scope="module")
def trained(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-step single-process EAGLE-3 run in speculators' default layout; its export folder."""
    out = tmp_path_factory.mktemp("norm-layout")
    overrides = [*short_run_overrides(small_corpus, out, steps=6), *LAYOUT, "draft.draft_vocab_size=512",
                 "draft.ttt_steps=2", "deepspeed=none"]  # fmt: skip
    run_train(overrides, nproc=1)
    return out / "export"


def test_training_switches_reach_the_head_and_the_speculators_config(trained: Path, tmp_path: Path) -> None:
    head, _ = load_draft(trained)
    assert head.config.norm_before_residual and head.config.norm_before_fc
    tensors = load_file(str(trained / "model.safetensors"))
    # input_norm exists only in this layout, and training moved it off its all-ones start
    assert not torch.equal(tensors["input_norm.weight"], torch.ones_like(tensors["input_norm.weight"]))
    folder = export_draft(trained, "speculators", tmp_path / "spec", str(TINY_LLAMA.resolve()))
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["norm_before_residual"] is True and cfg["norm_before_fc"] is True, cfg


@pytest.mark.skipif(
    not (VLLM_PYTHON and Path(VLLM_PYTHON).is_file()),
    reason=f"no speculators environment: set {ENV_VAR} to vLLM's python (docs/serving.md 'Serving engines (vLLM)')",
)
def test_speculators_library_computes_our_logits_for_the_trained_layout(
    trained: Path, tmp_path: Path
) -> None:
    target = FrozenTarget.load(str(TINY_LLAMA))
    head, _ = load_draft(trained)
    head.eval()
    folder = export_draft(trained, "speculators", tmp_path / "spec", str(TINY_LLAMA.resolve()))
    ids = target.tokenizer("The json module can serialize Python objects", return_tensors="pt").input_ids
    with torch.no_grad():
        hs = target.model(input_ids=ids, output_hidden_states=True).hidden_states
        feats = torch.cat([hs[i] for i in head.config.feature_layers], dim=-1)
        want = head.logits(head(target.embed(ids), layer_features=feats))
    save_file({"input_ids": ids.contiguous(), "hidden_states": feats.contiguous()}, str(tmp_path / "x.st"))
    job = {"folder": str(folder), "inputs": str(tmp_path / "x.st"), "logits_out": str(tmp_path / "l.st")}
    res = run_script(VLLM_PYTHON, SPECULATORS_PROBE, job, timeout_s=600)
    assert res["bad_parameters"] == [], f"zero or non-finite after from_pretrained: {res['bad_parameters']}"
    got = load_file(str(tmp_path / "l.st"))["logits"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
