"""Speculative decoding must reproduce the target's greedy output exactly, whatever the draft.

Real shipped targets, real EAGLE heads; the only stand-ins are test drafts built to probe the bookkeeping
(an oracle that always agrees with the target, and the same head re-run without a cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from data.embedded_paths import TINY_LLAMA_DIR, TINY_QWEN2_DIR
from eval.config import EvalConfig, PromptsConfig
from eval.run import LosslessError, evaluate, random_head
from eval.spec_decode import eos_token_ids, greedy_decode, speculative_decode
from train.modeling.draft.io import save_draft
from train.modeling.target import FrozenTarget, TargetConfig
from train.tracking import LoggerConfig

TARGETS = {"tiny-llama": TINY_LLAMA_DIR, "tiny-qwen2": TINY_QWEN2_DIR}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> FrozenTarget:
    torch.set_num_threads(1)  # tiny models: threads only add scheduling noise on a shared 2-core machine
    return TargetConfig(name_or_path=str(TARGETS[request.param])).load("cpu")


def eval_config(target: FrozenTarget, out: Path, draft_path: str, **kw) -> EvalConfig:
    return EvalConfig(
        target=TargetConfig(name_or_path=target.name_or_path),
        logger=LoggerConfig(name="none", mode="disabled"),
        draft_path=draft_path,
        prompts=PromptsConfig(num_prompts=kw.pop("num_prompts", 4)),
        max_new_tokens=kw.pop("max_new_tokens", 24),
        device="cpu",
        output_dir=str(out),
        **kw,
    )


def export_random_draft(target: FrozenTarget, out: Path) -> Path:
    torch.manual_seed(0)
    head = random_head(target)
    return save_draft(head.state_dict(), head.config, out, dict(target.fingerprint()))


def test_random_draft_is_lossless(target: FrozenTarget, tmp_path: Path) -> None:
    draft = export_random_draft(target, tmp_path / "draft")
    result = evaluate(eval_config(target, tmp_path / "eval", str(draft), draft_length=3), target=target)
    assert result.lossless
    assert {r["category"] for r in result.records} == {"chat", "docs"}
    m = result.metrics["all"]
    assert 1.0 <= m["tau"] <= 4.0
    assert m["spec_tokens"] == m["baseline_tokens"]
    for rec in result.records:
        # Every emitted token is accounted for by the per-step accepted lengths (+1 bonus each step),
        # except where an eos or max_new_tokens cut the last step short.
        assert len(rec["output_token_ids"]) - 1 <= sum(a + 1 for a in rec["accepted_lengths"])


def test_greedy_reference_equals_hf_generate(target: FrozenTarget) -> None:
    """The reference itself is checked against transformers' own greedy search."""
    prompt = docs_prompt(target)
    eos = eos_token_ids(target)
    ours = greedy_decode(target, prompt, 20, eos).tokens
    ids = torch.tensor([prompt])
    gen = target.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, eos_token_id=sorted(eos),
        pad_token_id=sorted(eos)[0],
    )  # fmt: skip
    theirs = gen[0, len(prompt) :].tolist()
    assert ours == theirs[: len(ours)]
    assert len(ours) == 20 or ours[-1] in eos


class HistoryCache:
    """Stands in for the draft's KVCache: remembers inputs instead of keys, crops the same way."""

    def __init__(self) -> None:
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # one (embed, feature) per position

    @property
    def length(self) -> int:
        return len(self.inputs)

    def crop(self, n: int) -> None:
        del self.inputs[n:]


class OracleHead(nn.Module):
    """Predicts the target's true next feature by running the target on the token history it was fed:
    every drafted token must then be accepted, which only happens if drafting, cropping and re-feeding
    the verified pairs keep the draft's positions aligned with the target's."""

    def __init__(self, target: FrozenTarget, first_token: int) -> None:
        super().__init__()
        self.target, self.first = target, first_token

    def new_cache(self) -> HistoryCache:
        return HistoryCache()

    def forward(
        self, input_embeds: torch.Tensor, features: torch.Tensor, cache: HistoryCache
    ) -> torch.Tensor:
        cache.inputs.extend((e, f) for e, f in zip(input_embeds[0], features[0], strict=True))
        table = self.target.model.get_input_embeddings().weight
        ids = torch.cdist(torch.stack([e for e, _ in cache.inputs]), table).argmin(-1)
        seq = torch.cat([torch.tensor([self.first]), ids])[None]
        return self.target.features(seq).hidden[:, -input_embeds.shape[1] :]

    @staticmethod
    def logits(hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        return lm_head(hidden)


class RecomputeHead(nn.Module):
    """The same EAGLE head re-run from scratch over every input it has been fed (no KV cache)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def new_cache(self) -> HistoryCache:
        return HistoryCache()

    def forward(
        self, input_embeds: torch.Tensor, features: torch.Tensor, cache: HistoryCache
    ) -> torch.Tensor:
        cache.inputs.extend((e, f) for e, f in zip(input_embeds[0], features[0], strict=True))
        emb = torch.stack([e for e, _ in cache.inputs])[None]
        feat = torch.stack([f for _, f in cache.inputs])[None]
        return self.head(emb, feat)[:, -input_embeds.shape[1] :]

    logits = staticmethod(OracleHead.logits)


def chat_prompt(target: FrozenTarget) -> list[int]:
    text = target.tokenizer.apply_chat_template(
        [{"role": "user", "content": "How do I read a file in Python?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    return target.tokenizer(text, add_special_tokens=False)["input_ids"]


def docs_prompt(target: FrozenTarget) -> list[int]:
    return target.tokenizer("The json module can serialize Python objects", add_special_tokens=True)[
        "input_ids"
    ]


@pytest.mark.parametrize("k", [1, 4])
def test_oracle_draft_is_always_accepted(target: FrozenTarget, k: int) -> None:
    prompt, eos = chat_prompt(target), eos_token_ids(target)
    greedy = greedy_decode(target, prompt, 30, eos)
    spec = speculative_decode(target, OracleHead(target, prompt[0]), prompt, k, 30, eos)
    assert spec.tokens == greedy.tokens
    assert spec.accepted == spec.drafted  # every drafted token kept
    # k drafted + 1 bonus per verification, except the last step, which the limit or an eos may cut.
    assert all(e == k + 1 for e in spec.emitted[:-1])
    assert spec.target_forwards < greedy.target_forwards or len(greedy.tokens) <= 2


class Recorder(nn.Module):
    """Records what a head returns, so two heads can be compared call for call."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head, self.outputs = head, []
        self.new_cache, self.logits = head.new_cache, head.logits

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = self.head(*args, **kwargs)
        self.outputs.append(out.detach().clone())
        return out


@pytest.mark.parametrize("fixed_accept", [None, 2])
def test_incremental_draft_cache_equals_recompute(target: FrozenTarget, fixed_accept: int | None) -> None:
    """Cropping the draft cache and re-feeding verified pairs gives exactly the features a from-scratch
    draft computes. fixed_accept=2 (a deliberately wrong verifier) makes every step re-feed 3 pairs."""
    torch.manual_seed(0)
    head = random_head(target).eval()
    # A docs prompt: the targets continue documentation at length, so there are many steps to compare.
    prompt, eos = docs_prompt(target), eos_token_ids(target)
    verifier = (lambda d, t: min(fixed_accept, d.numel())) if fixed_accept else None
    kw = {"verifier": verifier} if verifier else {}
    cached, fresh = Recorder(head), Recorder(RecomputeHead(head))
    a = speculative_decode(target, cached, prompt, 4, 20, eos, **kw)
    b = speculative_decode(target, fresh, prompt, 4, 20, eos, **kw)
    assert a.tokens == b.tokens and a.accepted == b.accepted
    assert len(cached.outputs) == len(fresh.outputs)
    assert len(a.accepted) >= 5, "too few verification steps to exercise the cropping"
    for x, y in zip(cached.outputs, fresh.outputs, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_wrong_verifier_fails_loudly(target: FrozenTarget, tmp_path: Path) -> None:
    """A verifier that accepts every drafted token (a random draft's included) must not pass as lossless."""
    cfg = eval_config(target, tmp_path / "eval", "random", num_prompts=2, max_new_tokens=16)
    with pytest.raises(
        LosslessError, match=r"prompt (chat|docs)/\S+: speculative output differs .* new token \d+"
    ):
        evaluate(cfg, target=target, verifier=lambda drafted, target_argmax: drafted.numel())
    rows = [json.loads(line) for line in (tmp_path / "eval" / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and not any(r["lossless"] for r in rows)
    assert all(r["first_mismatch"] >= 1 for r in rows)  # the prefill's token is always right
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["lossless"] is False
