"""`python -m eval` end to end through Hydra, the strict config, and the held-out prompt selection."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer

from data.embedded_paths import TOKENIZER_DIR
from data.paths import CONF_DIR, register_resolvers
from eval.config import TASK_CATEGORIES, EvalConfig, PromptsConfig, to_eval_config
from eval.prompts import load_prompts

TARGETS = sorted(p.stem for p in (CONF_DIR / "target").glob("*.yaml"))
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}


def compose_eval(overrides: list[str]) -> EvalConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_eval_config(compose(config_name="eval", overrides=overrides))


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_composes(target: str) -> None:
    cfg = compose_eval([f"target={target}", "draft_path=/some/export", "logger=none"])
    assert cfg.target.name_or_path and cfg.mode == "tree" and cfg.tree.budget >= cfg.tree.depth
    assert cfg.logger.name == "none" and cfg.prompts.source == "tasks" and cfg.batch_sizes == [1]


def test_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown eval config key 'prompts\.num_promts'"):
        compose_eval(["draft_path=x", "+prompts.num_promts=3"])
    with pytest.raises(ValueError, match=r"unknown eval config key 'bogus'"):
        to_eval_config({"draft_path": "x", "bogus": 1})


def test_missing_draft_path_is_named() -> None:
    with pytest.raises(ValueError, match=r"'draft_path' must be set .*draft_path=random"):
        compose_eval(["logger=none"])


def test_bad_decoding_settings_are_named() -> None:
    cfg = compose_eval(
        ["draft_path=x", "temperature=0.7", "top_p=0.9", "mode=chain", "batch_sizes=[1,4,16,64]"]
    )
    assert (cfg.temperature, cfg.top_p, cfg.mode, cfg.batch_sizes) == (0.7, 0.9, "chain", [1, 4, 16, 64])
    with pytest.raises(ValueError, match=r"mode='beam'"):
        compose_eval(["draft_path=x", "mode=beam"])
    with pytest.raises(ValueError, match=r"top_p=0.0"):
        compose_eval(["draft_path=x", "top_p=0.0"])
    with pytest.raises(ValueError, match=r"prompts.categories=\['poetry'\]"):
        compose_eval(["draft_path=x", "prompts.categories=[poetry]"])


def test_task_categories_and_question_files(tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    got = load_prompts(PromptsConfig(num_prompts=12), tok)
    cats = [p.category for p in got.prompts]
    assert sorted(set(cats)) == sorted(TASK_CATEGORIES) and all(cats.count(c) == 2 for c in TASK_CATEGORIES)
    multi = next(p for p in got.prompts if p.category == "multi_turn")
    assert tok.decode(multi.input_ids).count("<|im_start|>assistant") == 2  # history + the reply to write
    path = tmp_path / "question.jsonl"
    rows = [{"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now rhyme it."]},
            {"question_id": 101, "category": "reasoning", "turns": ["What is 2+2?"]}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    q = load_prompts(PromptsConfig(source="questions", files=[str(path)], num_prompts=4), tok)
    assert [p.id for p in q.prompts] == ["reasoning/101", "writing/81"]
    assert "Write a haiku." in tok.decode(q.prompts[1].input_ids) and "rhyme" not in tok.decode(
        q.prompts[1].input_ids
    )


def test_prompts_are_stable_and_split_by_category() -> None:
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    cfg = PromptsConfig(source="embedded", num_prompts=7, docs_prefix_tokens=32)
    first, again = load_prompts(cfg, tok), load_prompts(cfg, tok)
    assert [p.id for p in first.prompts] == [p.id for p in again.prompts]
    assert [p.input_ids for p in first.prompts] == [p.input_ids for p in again.prompts]
    chat = [p for p in first.prompts if p.category == "chat"]
    docs = [p for p in first.prompts if p.category == "docs"]
    assert (len(chat), len(docs)) == (4, 3)
    assert all(p.id.startswith("chat/") for p in chat) and all(p.id.startswith("docs/") for p in docs)
    assert all(len(p.input_ids) == 32 for p in docs)
    # A chat prompt is the rendered first user turn, ending where the assistant would start writing.
    rendered = tok.decode(chat[0].input_ids)
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_start|>assistant\n")


def test_jsonl_prompt_files(tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    path = tmp_path / "mine.jsonl"
    rows = [
        {
            "id": "a",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        },
        {"text": "The quick brown fox jumps over the lazy dog. " * 20, "category": "prose"},
        {"id": "c", "messages": [{"role": "assistant", "content": "no user turn"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = load_prompts(
        PromptsConfig(source="jsonl", files=[str(path)], num_prompts=5, docs_prefix_tokens=16), tok
    )
    assert [p.id for p in got.prompts] == ["chat/a", "prose/mine.jsonl:2"]
    assert "Be brief." in tok.decode(got.prompts[0].input_ids)  # a leading system turn is kept
    assert got.skipped == {"no_user_turn": 1}


def test_python_m_eval_writes_every_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "eval", "draft_path=random", "logger=none", "prompts.num_prompts=2",
           "max_new_tokens=8", "mode=chain", "draft_length=2", "device=cpu", "cpu_threads=1", "batch_sizes=[1,2]",
           "prompts.categories=[qa,code]", "progress=false", f"output_dir={out}"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tau = tokens emitted per target verification forward, bonus token counted" in proc.stdout
    assert "acceptance_at_2" in proc.stdout and "speedup" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["lossless"] is True and results["metrics"]["all"]["prompts"] == 2
    # Every tau and speed-up carries its 95 % bootstrap interval, which holds the point (2 prompts at batch 1:
    # 2 units to resample; at batch 2 the one batch leaves the speed-up without an interval, said as null).
    for scope in ("1", "2"):
        row = results["by_batch_size"][scope]["all"]
        assert row["tau_ci95"][0] <= row["tau"] <= row["tau_ci95"][1]
    one = results["by_batch_size"]["1"]["all"]
    assert one["speedup_ci95"][0] <= one["speedup"] <= one["speedup_ci95"][1]
    assert results["by_batch_size"]["2"]["all"]["speedup_ci95"] is None
    assert "tau_ci95" in proc.stdout and "intervals" in results["notes"]
    assert results["target"]["target_fingerprint"]
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert float(table[0]["tau_ci95_lo"]) <= float(table[0]["tau"]) <= float(table[0]["tau_ci95_hi"])
    assert [(r["batch_size"], r["scope"]) for r in table] == [
        (b, s) for b in "12" for s in ("all", "code", "qa")
    ]
    assert "by batch size" in proc.stdout and "speedup_ceiling" in proc.stdout
    lines = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # 2 prompts x 2 batch sizes
    assert set(lines[0]) >= {"id", "category", "batch_size", "output_token_ids", "text", "accepted_lengths"}
    for png in ("acceptance_by_position.png", "tau_by_category.png", "batch_size.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / ".hydra" / "config.yaml").is_file() and (out / "eval_config.yaml").is_file()
