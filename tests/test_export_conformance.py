"""Each export checked against the written description of the engine loader that reads it
(tests/fixtures/export_formats/<format>.md, which cites the loader source and version): file names, config
fields and values, and every tensor's name, shape and dtype. A renamed, reshaped or extra tensor fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import TINY_LLAMA
from tests.test_export_formats import V, build, our_export
from train.export import export_draft
from train.modeling.target import FrozenTarget

SPECS = Path(__file__).parent / "fixtures" / "export_formats"
DTYPE = "bfloat16"  # not our training dtype, so a format that forgets to cast is caught
CASES = [
    ("eagle", "eagle"),
    ("eagle3", "eagle3-sglang"),
    ("scylla", "speculators"),
    ("medusa-shared", "medusa"),
    ("dense", "hf-dense"),
]


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    return FrozenTarget.load(str(TINY_LLAMA))


def spec(fmt: str) -> dict:
    text = (SPECS / f"{fmt}.md").read_text()
    return json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))


def lookup(cfg: dict, dotted: str) -> object:
    node: object = cfg
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]  # KeyError names a missing field
    return node


def symbols(head: torch.nn.Module) -> dict[str, int]:
    c = head.config
    if hasattr(c, "hf_config"):
        hf = c.hf_config
        return {"H": hf["hidden_size"], "I": hf["intermediate_size"], "V": V,
                "Q": hf["num_attention_heads"] * hf["head_dim"], "KV": hf["num_key_value_heads"] * hf["head_dim"]}  # fmt: skip
    dims = {"H": c.hidden_size, "V": V, "DV": getattr(c, "draft_vocab_size", V)}
    if hasattr(c, "num_kv_heads"):
        dims |= {"I": c.intermediate_size, "Q": c.num_heads * c.head_dim, "KV": c.num_kv_heads * c.head_dim}
    return dims


def pattern(name: str, head: torch.nn.Module) -> re.Pattern:
    layers = str(getattr(head.config, "num_layers", 0))
    text = re.escape(name).replace(r"\{L\}", layers).replace(r"\{i\}", "[1-9][0-9]*")
    return re.compile(re.sub(r"\\\{[a-z]\\\}", "[0-9]+", text) + "$")


@pytest.mark.parametrize(("kind", "fmt"), CASES)
def test_export_matches_the_loader_description(
    kind: str, fmt: str, target: FrozenTarget, tmp_path: Path
) -> None:
    s, head = spec(fmt), build(kind, target)
    out = export_draft(our_export(head, target, tmp_path / "ours"), fmt, tmp_path / fmt, dtype=DTYPE)
    for f in s["files"]:
        assert (out / f).is_file(), f"{fmt}: missing {f}"
    cfg = json.loads((out / "config.json").read_text())
    for key, value in s["config"].items():
        assert lookup(cfg, key) == value, f"{fmt}: config {key}"
    types = {"int": int, "float": float, "str": str, "list": list}
    for key, kind_name in s["config_types"].items():
        assert isinstance(lookup(cfg, key), types[kind_name]), f"{fmt}: config {key} is not {kind_name}"
    dims = symbols(head)
    want_dtype = {"float": getattr(torch, DTYPE), "int64": torch.int64, "bool": torch.bool}
    patterns = {name: (pattern(name, head), rule) for name, rule in s["tensors"].items()}
    used: set[str] = set()
    with safe_open(str(out / s["weights"]), framework="pt") as f:
        for key in f.keys():
            rules = [(n, r) for n, (p, r) in patterns.items() if p.match(key)]
            assert rules, f"{fmt}: tensor {key} is not in the loader's layout"
            t = f.get_tensor(key)
            for n, r in rules:
                used.add(n)
                assert list(t.shape) == [eval(d, {}, dims) for d in r["shape"]], f"{fmt}: {key} shape"  # noqa: S307
                assert t.dtype == want_dtype[r["dtype"]], f"{fmt}: {key} dtype {t.dtype}"
            assert key not in s.get("forbidden", []), f"{fmt}: {key} must not be present"
    missing = [n for n, (_, r) in patterns.items() if n not in used and not r.get("optional")]
    assert not missing, f"{fmt}: tensors the loader needs are missing: {missing}"


def test_a_renamed_tensor_fails_conformance(target: FrozenTarget, tmp_path: Path) -> None:
    """The check itself: the description rejects the name our own layout uses for the same tensor."""
    rules = spec("eagle3-sglang")["tensors"]
    assert not any(pattern(n, build("eagle3", target)).match("layers.0.hidden_norm.weight") for n in rules)


def test_eagle3_feature_layers_follow_each_engines_convention(target: FrozenTarget, tmp_path: Path) -> None:
    src = our_export(
        build("eagle3", target), target, tmp_path / "ours"
    )  # feature_layers = hidden_states[1, 2, 3]
    sg = json.loads((export_draft(src, "eagle3-sglang", tmp_path / "sg") / "config.json").read_text())
    sp = json.loads((export_draft(src, "speculators", tmp_path / "sp") / "config.json").read_text())
    assert sg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 1, 2]  # SGLang adds 1
    assert sp["eagle_aux_hidden_state_layer_ids"] == [1, 2, 3]  # vLLM uses them as they are
    with safe_open(str(tmp_path / "sg" / "model.safetensors"), framework="pt") as f:
        d2t = f.get_tensor("d2t")
    head = build("eagle3", target)
    assert torch.equal(d2t + torch.arange(len(d2t)), head.d2t)  # offsets on disk, absolute ids in our head
