"""Speculative sampling is lossless: at temperature 1 the emitted tokens are distributed as the target's own
samples (chi-square on next-token frequencies over many independent rows), for a sampled chain (the ratio
rule p/q) and for a top-k tree (recursive rejection over siblings); and the same test FAILS when the
rejection rule is broken on purpose, so it has the power to catch a real bug.

The draft is the target itself with sharpened logits (q != p, same ranking): it proposes the target's
likely tokens too often, so acceptance and rejection both happen often and a wrong residual shows.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from data.embedded_paths import TINY_LLAMA_DIR
from data.target_io import eos_token_ids
from eval.drafters import DraftSettings
from eval.drafters.oracle import TargetDrafter
from eval.engine import Engine
from eval.verify import TreeVerifier
from train.decoding.sampling import Sampling
from train.modeling.target import FrozenTarget, TargetConfig

ROWS = 400
SAMPLING = Sampling(temperature=1.0, top_p=0.95)
SHAPES = {
    "chain": DraftSettings(mode="chain", draft_length=2, sampling=SAMPLING),
    "tree": DraftSettings(depth=2, topk=3, budget=6, sampling=SAMPLING),
}


@pytest.fixture(scope="module")
def target() -> FrozenTarget:
    torch.set_num_threads(1)
    return TargetConfig(name_or_path=str(TINY_LLAMA_DIR), attn_implementation="sdpa").load("cpu")


class ResampleFromTarget(TreeVerifier):
    """The classic bug: after a rejection, sample from p instead of the residual max(p - q, 0)."""

    @staticmethod
    def residual(p: torch.Tensor, x: int, q: torch.Tensor | None) -> torch.Tensor:
        return p


def chi_square_p_value(observed: Counter, expected: dict[int, float]) -> float:
    """Pearson's test; cells expecting fewer than 5 are pooled into one."""
    cells, rest_o, rest_e = [], 0.0, 0.0
    for tok, e in expected.items():
        if e >= 5:
            cells.append((observed.get(tok, 0), e))
        else:
            rest_o, rest_e = rest_o + observed.get(tok, 0), rest_e + e
    rest_o += sum(n for tok, n in observed.items() if tok not in expected)
    if rest_e > 0:
        cells.append((rest_o, rest_e))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    df = len(cells) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), torch.tensor(stat / 2.0)))


def next_token_p_values(target: FrozenTarget, prompt: list[int], outputs: list[list[int]]) -> list[float]:
    """For new-token index 1 and 2 (index 0 comes from the prefill, sampled directly), compare counts with
    the sum over rows of the target's exact sampling distribution given that row's earlier tokens."""
    p_values = []
    for i in (1, 2):
        rows = [o for o in outputs if len(o) > i]
        prefixes = sorted({tuple(o[:i]) for o in rows})
        with torch.inference_mode():  # every prefix has the same length: one batched forward
            logits = target.model(input_ids=torch.tensor([prompt + list(pre) for pre in prefixes])).logits[
                :, -1
            ]
            probs = dict(zip(prefixes, SAMPLING.probs(logits), strict=True))
        expected = torch.stack([probs[tuple(o[:i])] for o in rows]).sum(0)
        support = {int(t): float(expected[t]) for t in torch.nonzero(expected > 0).flatten()}
        p_values.append(chi_square_p_value(Counter(o[i] for o in rows), support))
    return p_values


def sample_outputs(
    target: FrozenTarget, shape: str, verifier: TreeVerifier | None
) -> tuple[list[int], list[list[int]]]:
    prompt = target.tokenizer("The json module can", add_special_tokens=True)["input_ids"]
    settings = SHAPES[shape]
    engine = Engine(
        target,
        TargetDrafter(target, distort=0.5),
        settings,
        eos_token_ids(target.model, target.tokenizer),
        verifier,
    )
    gen = torch.Generator().manual_seed(1234)
    out = engine.generate([prompt] * ROWS, 3, gen)
    # Drafts were tried and judged: some accepted, some rejected (otherwise the test would test nothing).
    accepted = [a for r in out.rows for a in r.accepted]
    assert 0 < sum(a > 0 for a in accepted) < len(accepted)
    return prompt, [r.tokens for r in out.rows]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_sampling_matches_target_distribution(target: FrozenTarget, shape: str) -> None:
    prompt, outputs = sample_outputs(target, shape, None)
    p_values = next_token_p_values(target, prompt, outputs)
    assert min(p_values) > 1e-3, f"speculative samples differ from the target's distribution: p={p_values}"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_broken_rejection_rule_is_detected(target: FrozenTarget, shape: str) -> None:
    prompt, outputs = sample_outputs(target, shape, ResampleFromTarget(SAMPLING))
    p_values = next_token_p_values(target, prompt, outputs)
    assert min(p_values) < 1e-4, f"the chi-square test missed a broken acceptance rule: p={p_values}"
