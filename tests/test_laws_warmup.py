"""The warm-up rule (eval/laws/warmup.py) on noisy synthetic tokens curves whose answer is known: it finds a
break placed between two budgets, with an interval that holds it; it declares no warm-up on a straight line
(about as often as its 5 % test allows) nor on a curve that saturates."""

from __future__ import annotations

import numpy as np

from eval.laws.warmup import find_warmup

BUDGETS = np.geomspace(12_500, 1_600_000, 8)  # the tiny sweep's tokens grid, 12.5k to 1.6M, doublings
TRUE_BREAK = 70_000  # between the 50k and 100k budgets: not a grid point the search could land on by luck


def _two_regimes(seed: int) -> np.ndarray:
    u = np.log(BUDGETS)
    noise = np.random.default_rng(seed).normal(0, 0.02, u.size)
    return 1.3 + 0.05 * u + 0.40 * np.maximum(0.0, u - np.log(TRUE_BREAK)) + noise


def test_the_rule_recovers_a_known_break_with_its_interval() -> None:
    """20 noisy curves (noise sd 0.02 tau, slope 0.05 then 0.45 per e-fold of tokens): every one is declared a
    warm-up, every estimate is within a factor 1.25 of the true break (|ln ratio| < 0.22; the grid's budgets
    are a factor 2 apart), and the 95 % residual-bootstrap interval holds the true break in at least 16 of 20
    (measured 35 of 40 with seeds 0-39: a residual bootstrap on 8 points runs a little short)."""
    found = [find_warmup(BUDGETS, _two_regimes(seed), n_boot=300, seed=seed) for seed in range(20)]
    assert all(w.detected for w in found), [w.reason for w in found if not w.detected]
    errors = [abs(np.log(w.break_tokens / TRUE_BREAK)) for w in found]
    assert max(errors) < 0.22, errors
    inside = sum(w.ci95[0] <= TRUE_BREAK <= w.ci95[1] for w in found)
    assert inside >= 16, [w.ci95 for w in found]
    # The cut: budgets from 100k on are fitted, 12.5k-50k are the warm-up.
    assert all(50_000 < w.cut() <= 100_000 for w in found)
    assert all(w.slope_after > 0.4 and w.slope_before < 0.15 for w in found)


def test_no_warmup_on_a_straight_line_or_a_saturating_curve() -> None:
    u = np.log(BUDGETS)
    lines = [
        find_warmup(BUDGETS, 1 + 0.3 * u + np.random.default_rng(s).normal(0, 0.02, 8), 300, s)
        for s in range(40)
    ]
    assert sum(w.detected for w in lines) <= 5  # a 5 % test: 2 expected, 5 is 2 sd above
    assert all(w.cut() == 0.0 for w in lines if not w.detected)
    flat_top = 1 + 0.4 * np.minimum(u, np.log(200_000))  # grows, then stops: saturation is the law's business
    sat = find_warmup(BUDGETS, flat_top + np.random.default_rng(0).normal(0, 0.02, 8), 300)
    assert not sat.detected and "saturation" in sat.reason
    few = find_warmup(BUDGETS[:5], _two_regimes(0)[:5])
    assert not few.detected and "needs >= 6" in few.reason


def test_every_laws_command_in_the_docs_parses() -> None:
    """Each `python -m eval.laws <sweep> ...` that docs/scaling-laws.md and launch/sweep_tiny.sh print (the
    warm-up rule's, and --min-tokens as its override) is accepted by the CLI as printed; running them needs a
    sweep's folder, which this clone does not hold."""
    import re
    import shlex

    from data.paths import REPO_ROOT
    from eval.laws.__main__ import build_parser

    text = (REPO_ROOT / "docs" / "scaling-laws.md").read_text() + (
        REPO_ROOT / "launch" / "sweep_tiny.sh"
    ).read_text()
    commands = re.findall(r"python -m eval\.laws (?!\.)([^`\n#]*)", text)
    assert any("--min-tokens" in c for c in commands) and any("--min-tokens" not in c for c in commands)
    for args in commands:
        parsed = build_parser().parse_args(shlex.split(args.replace("$NAME", "x").strip().strip('"')))
        assert parsed.sweep_dir.name
