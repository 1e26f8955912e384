"""Issue 16 items 1 and 3 on a target the repo does not ship (tests/own_target.py): one tokenizer resolution
for every command, recorded; ids past the embedding refused only when they can occur; eval's target taken
from the export; a prompts file read whole."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from data.blocks import build_blocks
from data.fingerprint import tokenizer_fingerprint
from data.regenerate import RegenJob, run_regenerate
from data.spec import load_data_config, split_spec
from data.target_io import TokenizerMismatchWarning, check_tokenizer_path, load_target, load_tokenizer
from eval.config import EvalConfig, PromptsConfig
from eval.inputs import use_recorded_target
from eval.prompts import load_prompts
from tests.conftest import EMBEDDED, REPO, TINY_LLAMA
from tests.own_target import SPARE_TOKEN, TEMPLATE, build_own_target, tokenizer_only
from train.drafts.io import EXPORT_FORMAT
from train.export import _target
from train.feature_source import load_tokenizer as train_tokenizer
from train.modeling.target import TargetConfig


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_own_target(tmp_path_factory.mktemp("own") / "my-target")


def test_default_is_what_transformers_serves_with_and_the_difference_is_warned(own: Path) -> None:
    with pytest.warns(TokenizerMismatchWarning, match=r"Qwen2Tokenizer.*as written.*tokenizer\.json"):
        auto = load_tokenizer(str(own))
    assert type(auto).__name__ == "Qwen2Tokenizer"
    written = load_tokenizer(str(own / "tokenizer.json"))  # the file as written: chosen explicitly
    probe = "def f(x):\n    return x ** 2"
    assert auto(probe)["input_ids"] != written(probe)["input_ids"]
    assert written.chat_template == auto.chat_template == TEMPLATE
    # Recorded fingerprints tell the two readings apart (same vocabulary, other pre-tokenizer/normaliser).
    assert tokenizer_fingerprint(auto) != tokenizer_fingerprint(written)
    # The shipped tokenizers are read the same both ways: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", TokenizerMismatchWarning)
        load_tokenizer(str(TINY_LLAMA))


def test_a_folder_of_tokenizer_files_alone_is_a_tokenizer(own: Path, tmp_path: Path) -> None:
    folder = tokenizer_only(own, tmp_path / "tok")
    check_tokenizer_path(str(folder))  # no config.json needed
    from hydra import compose, initialize_config_dir

    from data.paths import CONF_DIR, register_resolvers
    from train.config import check_paths, to_typed

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(
            compose("train", overrides=[f"target.name_or_path={own}", f"target.tokenizer={folder}"])
        )
    check_paths(cfg)
    model, tok = load_target(str(own), tokenizer=str(folder))
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(load_tokenizer(str(own), warn=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer_config.json"):
        check_tokenizer_path(str(tmp_path / "empty"))


def test_ids_past_the_embedding_are_refused_only_when_they_can_occur(tmp_path: Path) -> None:
    # 4,096 embedding rows; the spare special token is id 4096: nothing writes it, so the target loads.
    spare = build_own_target(tmp_path / "spare", rows=4096)
    model, tok = load_target(str(spare))
    assert tok.convert_tokens_to_ids(SPARE_TOKEN) == 4096 == model.get_input_embeddings().weight.shape[0]
    # The chat template writes it: a chat would index past the embedding.
    written = tmp_path / "written"
    build_own_target(written, rows=4096)
    (written / "chat_template.jinja").write_text(TEMPLATE.replace("'<|im_end|>", f"'{SPARE_TOKEN}<|im_end|>"))
    with pytest.raises(
        ValueError, match=re.escape(f"id 4096 (special token '{SPARE_TOKEN}' (written by the chat")
    ):
        load_target(str(written))
    # A base vocabulary larger than the embedding: any text can reach past it.
    small = build_own_target(tmp_path / "small", rows=4000, spare=None)
    with pytest.raises(
        ValueError, match=r"can produce id 4095 \(its base vocabulary.*only 4000 embedding rows"
    ):
        load_target(str(small))


def _count(out: str, pattern: str) -> int:
    match = re.search(pattern, out)
    assert match, out[-2000:]
    return int(match.group(1))


def test_regenerate_validate_vocab_and_train_count_the_same_tokens(own: Path, tmp_path: Path) -> None:
    chats = tmp_path / "chats.jsonl"
    with gzip.open(EMBEDDED / "corpus" / "dialogues_train.jsonl.gz", "rt") as f:
        lines = [line for _, line in zip(range(60), f, strict=False)]
    # Answers with indented code, digits and accents: where the two readings of tokenizer.json differ.
    for answer in ("def f(x):\n    return x ** 2\n\n\nprint(f(3))", "1234567 + 89; caf\u00e9 \ufb01le"):
        chat = [{"role": "user", "content": "Show me."}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": chat}) + "\n")
    chats.write_text("".join(lines))
    regenerated = tmp_path / "regenerated.jsonl"
    spec = split_spec(load_data_config("embedded-dialogues", [f"train_files=[{chats}]"]), "train")
    run_regenerate(
        RegenJob(str(own), spec.source, str(regenerated), limit=8, max_new_tokens=6, progress=False)
    )
    data_yaml = tmp_path / "data.yaml"
    conf = yaml.safe_load((REPO / "conf" / "data" / "embedded-dialogues.yaml").read_text())
    conf.update(train_files=[str(chats), str(regenerated)], valid_files=[])
    data_yaml.write_text(yaml.safe_dump(conf))

    train_spec = split_spec(load_data_config(str(data_yaml)), "train")
    blocks = build_blocks(train_spec, train_tokenizer(TargetConfig(name_or_path=str(own))))
    trained, in_loss = blocks.report.tokens, int(blocks.loss_mask.sum())  # all kept; those trained on
    written = build_blocks(train_spec, load_tokenizer(str(own / "tokenizer.json"))).report.tokens
    assert trained != written  # the two readings differ on this file: a command reading the other is caught

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "data", *args], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    validated = _count(
        run("validate", "--tokenizer", str(own), "--data", str(data_yaml)), r"(\d+) tokens kept"
    )
    vocab_out = run("vocab", "--tokenizer", str(own), "--data", str(data_yaml), "--size", "512", "--out",
                    str(tmp_path / "v.safetensors"))  # fmt: skip
    assert (validated, _count(vocab_out, r"of (\d+) counted tokens")) == (trained, in_loss)


def test_eval_takes_the_recorded_target_and_refuses_another(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    meta = {"target": str(tmp_path / "mine"), "tokenizer": str(tmp_path / "mine" / "tokenizer.json")}
    (export / "config.json").write_text(json.dumps({"format": EXPORT_FORMAT, "head": {}, "meta": meta}))
    (tmp_path / "mine").mkdir()
    cfg = EvalConfig(target=TargetConfig(name_or_path=str(TINY_LLAMA)), draft_path=str(export))
    got = use_recorded_target(cfg, set()).target
    assert (got.name_or_path, got.tokenizer) == (meta["target"], meta["tokenizer"])
    with pytest.raises(
        ValueError, match=f"target.name_or_path={TINY_LLAMA}.*trained against {meta['target']} and records no"
    ):
        use_recorded_target(cfg, {"target"})
    same = EvalConfig(target=TargetConfig(name_or_path=meta["target"]), draft_path=str(export))
    assert use_recorded_target(same, {"target.name_or_path"}).target.name_or_path == meta["target"]


def test_a_prompts_file_is_read_whole_unless_num_prompts_is_set(tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(TINY_LLAMA)
    path = tmp_path / "p.jsonl"
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"question {i}?"}]} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(load_prompts(PromptsConfig(source="jsonl", files=[str(path)]), tok).prompts) == 40
    assert (
        len(load_prompts(PromptsConfig(source="jsonl", files=[str(path)], num_prompts=5), tok).prompts) == 5
    )
    assert len(load_prompts(PromptsConfig(), tok).prompts) == 16  # the shipped tasks: a default sample


def test_export_names_its_tokenizer_or_takes_the_recorded_one(own: Path) -> None:
    written = str(own / "tokenizer.json")
    fp = tokenizer_fingerprint(load_tokenizer(written))
    assert _target(None, {"target": str(own), "tokenizer": written}).tokenizer_fingerprint == fp
    assert _target(str(own), {}, tokenizer=written).tokenizer_fingerprint == fp
    assert _target(str(own), {}).tokenizer_fingerprint != fp
