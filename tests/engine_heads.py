"""Draft heads that accept, for the engine tests: every architecture trained by our own trainer, cached.

An engine test can only tell whether vLLM reads a weight if that weight changes what the draft proposes,
and only then if the drafts are accepted often enough for a change to show. So each architecture is trained
here for a short run (`python -m train`'s `run`, one process, `deepspeed=none`) against the target's own
greedy continuations of the task prompts that the engine tests decode (self-distillation on the decode
set: the heads are fitted to these prompts on purpose; this is a conformance fixture, not a quality
measurement). All weight groups are trained from their initialisation, so perturbing any of them moves the
drafts (tests/bench/bench_vllm_mutations.py shows it per group).

The exports are cached under .cache/engine-heads/<target>/<arch>-<key>/, the key hashing the training code
and configs (train/, data/, conf/), the target folder's files and the run's settings: a change to any of
them retrains. A cold
cache costs one short training run per architecture and target (about 40 s each on 2 quiet cores).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from data.paths import CONF_DIR, register_resolvers
from eval.config import PromptsConfig
from eval.prompts import load_prompts
from tests.conftest import REPO, TINY_QWEN2

CACHE = REPO / ".cache" / "engine-heads"
K = 3  # draft tokens per step in every engine test
ARCHS = ("eagle3", "scylla", "eagle", "medusa", "dense")
DECODE_PROMPTS = 6  # one task prompt per category
DECODE_NEW_TOKENS = 16
TRAIN_PROMPTS = (
    12  # two per category, the decode prompts among them (eval.prompts spreads each category alike)
)
CONTINUATION = DECODE_NEW_TOKENS + 24  # greedy tokens per prompt the heads learn from
STEPS = 40
DENSE_LAYERS = 2
# Longer runs where 40 steps stayed below MIN_ACCEPTANCE (measured): Medusa's third head on tiny-llama
# (19.9 %), the 2-layer Scylla head on the 4-layer Qwen2 (17.9 %). Keyed by arch or (target folder, arch).
ARCH_STEPS: dict[str | tuple[str, str], int] = {"medusa": 80, ("qwen2-4layers", "scylla"): 80}
TARGET_FILES = (".json", ".safetensors", ".jinja", ".txt", ".model")  # what a target folder's key covers
MIN_ACCEPTANCE = 0.2  # accepted / drafted tokens at k=3 that every trained head must reach

# Per architecture: the draft settings of the trained head (everything else is the algorithm config's default).
ARCH_OVERRIDES: dict[str, list[str]] = {
    "eagle3": ["draft=eagle3"],  # 2,048 of 4,096 tokens: the d2t map takes part
    "scylla": ["draft=scylla", "draft.num_layers=2"],  # a second decoder layer
    "eagle": ["draft=eagle"],
    "medusa": ["draft=medusa", f"draft.medusa_heads={K}"],
    # the target's first DENSE_LAYERS layers (+ final norm and LM head) as the starting point: a 1-layer LM
    # trained from scratch for 40 steps accepted 10 of 174 drafted tokens (5.7 %)
    "dense": ["draft=dense"],
}


def decode_prompts(tokenizer, n: int = DECODE_PROMPTS) -> list[list[int]]:  # noqa: ANN001
    """The prompts `python -m eval prompts.num_prompts=n` decodes (source: tasks), as token ids."""
    return [p.input_ids for p in load_prompts(PromptsConfig(num_prompts=n), tokenizer).prompts]


def _tree_hash(h: hashlib._Hash, root: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for f in sorted(root.rglob(pattern)):
            if "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())


def cache_key(target_dir: Path, *settings: object) -> str:
    """Hash of the training code and configs, the target folder's files and the given settings."""
    h = hashlib.sha256()
    for package in ("train", "data", "conf"):
        _tree_hash(h, REPO / package, ("*.py", "*.yaml", "*.jinja"))
    for f in sorted(target_dir.iterdir()):  # the model's own files (the folder may hold our cached runs too)
        if f.is_file() and f.suffix in TARGET_FILES:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    h.update(json.dumps(settings, default=str).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def self_distill_corpus(target_dir: Path, out: Path) -> Path:
    """{"text"} rows: each training prompt followed by the target's greedy continuation (pretrain-style, so
    the head is distilled on every position, prompt and answer)."""
    tok = AutoTokenizer.from_pretrained(target_dir)
    model = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    prompts = decode_prompts(tok, TRAIN_PROMPTS)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(map(len, prompts))
    # one batched greedy generate, prompts left-padded (masked), so each row continues its own prompt
    x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    y = model.generate(x, attention_mask=mask, max_new_tokens=CONTINUATION, do_sample=False, pad_token_id=pad)
    rows = []
    for i, p in enumerate(prompts):
        answer = y[i, width:].tolist()
        if tok.eos_token_id in answer:  # generate pads a finished row with eos: keep the first only
            answer = answer[: answer.index(tok.eos_token_id) + 1]
        rows.append({"text": tok.decode(p + answer, skip_special_tokens=False)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return out


@contextlib.contextmanager
def _world_of_one() -> Iterator[None]:
    """The trainer joins a process group of one and exports RANK/WORLD_SIZE/...; restore the environment
    afterwards so that later subprocesses (torchrun tests) do not inherit them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def train_overrides(arch: str, target_dir: Path) -> list[str]:
    """The run's settings besides its target, data files and output folder."""
    steps = ARCH_STEPS.get((target_dir.name, arch), ARCH_STEPS.get(arch, STEPS))
    start = [f"draft.pretrained_path={first_layers(target_dir)}"] if arch == "dense" else []
    return [
        *ARCH_OVERRIDES[arch], *start, "stage=pretrain", "data.valid_files=[]", "data.seq_len=64",
        "train.micro_batch_size=8", f"train.max_steps={steps}", f"train.save_every={steps}",
        "train.eval_every=0", "train.progress=false", "train.log_every=10", "optim.lr=5e-3",
        "optim.warmup_steps=2", "deepspeed=none", "logger=none",
    ]  # fmt: skip


def first_layers(target_dir: Path, n: int = DENSE_LAYERS) -> Path:
    """The target cut to its first n decoder layers (embedding, final norm and LM head kept): the dense
    draft's starting point, an early exit of the target."""
    out = CACHE / target_dir.name / f"first-{n}-layers-{cache_key(target_dir)}"
    if (out / "config.json").is_file():
        return out
    model = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32)
    model.model.layers = model.model.layers[:n]
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tmp.rename(out)
    return out


def train_head(arch: str, target_dir: Path, corpus: Path, out: Path) -> Path:
    """One short training run of `arch` through the public config path; returns its export folder."""
    from train.config import to_typed
    from train.trainer import run

    register_resolvers()
    overrides = [
        f"target.name_or_path={target_dir}", f"data.train_files=[{corpus}]", *train_overrides(arch, target_dir),
        f"output_dir={out}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose(config_name="train", overrides=overrides))
    with _world_of_one():
        torch.manual_seed(0)
        run(cfg)
    return out / "export"


def trained_export(arch: str, target_dir: Path) -> Path:
    """The cached export of `arch` trained against `target_dir` (trained now when the cache lacks it)."""
    corpus_key = cache_key(target_dir, TRAIN_PROMPTS, CONTINUATION)
    corpus = CACHE / target_dir.name / f"self-distill-{corpus_key}.jsonl.gz"
    run_dir = (
        CACHE
        / target_dir.name
        / f"{arch}-{cache_key(target_dir, corpus_key, train_overrides(arch, target_dir))}"
    )
    if (run_dir / "export" / "config.json").is_file():
        return run_dir / "export"
    if not corpus.is_file():
        self_distill_corpus(target_dir, corpus)
    shutil.rmtree(run_dir, ignore_errors=True)  # a run interrupted before its export: start over
    return train_head(arch, target_dir, corpus, run_dir)


def qwen2_four_layers(out: Path) -> Path:
    """A 4-layer Qwen2 target: tiny-qwen2 (3 layers, trained) plus a fourth layer that is a copy of its last
    with the residual contributions (o_proj, down_proj) scaled by 1/4. EAGLE-3 fuses three distinct layers the
    engines can capture (hidden_states[1..L-1]), which 3 layers do not have; the added layer keeps the
    target's greedy text close to tiny-qwen2's, so heads have a real model to draft for."""
    if (out / "config.json").is_file():
        return out
    model = AutoModelForCausalLM.from_pretrained(TINY_QWEN2, dtype=torch.float32)
    cfg = model.config
    cfg.num_hidden_layers = 4
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[-1]] * 4
    torch.manual_seed(0)
    deep = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    state = model.state_dict()
    for k, v in model.state_dict().items():
        if k.startswith("model.layers.2."):
            extra = k.replace("model.layers.2.", "model.layers.3.")
            state[extra] = v * 0.25 if ("o_proj" in k or "down_proj" in k) and k.endswith("weight") else v
    missing, unexpected = deep.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    deep.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(TINY_QWEN2).save_pretrained(tmp)
    # tiny-qwen2's own generation settings (eos = <|im_end|> and <|endoftext|>), which save_pretrained
    # would otherwise rebuild from config.json (eos = <|endoftext|> only)
    shutil.copy(TINY_QWEN2 / "generation_config.json", tmp / "generation_config.json")
    tmp.rename(out)
    return out
