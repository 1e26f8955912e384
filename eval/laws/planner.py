"""Questions answered from fitted laws (laws.json from `python -m eval.laws`) and measured costs.

1. tokens_for_tau: how many pretraining tokens, at each depth, for a target tau; the cheapest in training
   FLOPs wins. Inverts the joint law tau = a + b ln T + c ln P for T, per bootstrap refit, so the answer
   carries a 95 % interval.
2. best_for_budget: for training compute C and serving batch size B, the (depth, tokens, decoding shape)
   with the highest predicted throughput. Tokens follow from C at each depth (C / FLOPs-per-token); tau from
   the joint law; each measured decoding shape s at batch B scales that tau by tau_s / tau_tree as measured
   on the batch-axis draft, and costs draft_ms (scaled by P / P_measured: draft forwards are linear in its
   parameters) + verify_ms; speed-up = tau * baseline_step_ms / (draft_ms + verify_ms), throughput =
   speed-up * B / baseline_step_ms. Without batch-axis costs, tau_for_compute ranks (depth, tokens) by tau
   alone: under exact greedy verification tau does not depend on the batch size, only the costs do.
3. transfer: the laws of one sweep (the tiny one) carried to another sweep's grid (a cluster target's), for
   questions no sweep on that target has answered yet; see `transfer` for the assumption it makes.

Every row says whether its budget is an extrapolation (`extrapolated`: why, or "" inside the measured budgets):
after a transfer every budget is one, since nothing was measured on that grid. `max_extrapolation` bounds the
tokens of every answer (--tau and --compute alike). A predicted speed-up outside the range of every measured
one is named by outside_measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

CI = (2.5, 97.5)
CHAIN = "chain-k"  # vLLM's batch-axis shapes: a chain of k drafted tokens (eval.laws.batch_vllm_report.shape)
DEFAULT_MAX_EXTRAPOLATION = 1000.0  # refuse answers needing more than 1000x the largest measured budget
# What a transferred interval is and is not: its bootstrap refits carry the fit's own uncertainty (anchor
# level and slopes, so it widens with the distance from the anchor); the assumption itself is not in it.
TRANSFER_LEAVES_OUT = (
    "the 95% interval is the measured sweep's bootstrap carried to this grid (its anchor level and slopes, "
    "widening with the distance from the anchor); it leaves out the error of the transfer assumption itself "
    "(that this grid's largest budget has the measured sweep's largest-budget tau and the same slopes per "
    "e-fold of tokens and parameters), which no measurement here bounds: read it as a lower bound on the "
    "uncertainty"
)


class Unreachable(ValueError):
    """The asked-for tau cannot be had from these laws; the message says why."""


@dataclass
class Laws:
    coef: np.ndarray  # joint law (a, b, c)
    boot: np.ndarray  # bootstrap refits, rows of (a, b, c)
    capacity: dict[int, float]  # depth -> trainable parameters (measured)
    target_params: float
    ttt_steps: int
    max_tau: float  # tau cannot exceed the deepest verified path + 1
    max_tokens_measured: float
    batch: list[dict[str, Any]]
    tokens_depth: int | None = None  # the depth the tokens axis trained (where the law is anchored)
    # Set by transfer: where the laws were measured ("the sweep's 1.6e+06-token budget"); nothing was
    # measured on this grid, so every budget here is an extrapolation.
    transferred_from: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Laws:
        joint = data.get("joint") or {}
        if "params" not in joint:
            raise ValueError(f"laws file has no joint law ({joint.get('skipped', 'not fitted')}): run the "
                             "tokens and depth axes of the sweep first")  # fmt: skip
        p = joint["params"]
        return cls(
            coef=np.array([p["a"], p["b"], p["c"]]),
            boot=np.array(joint["boot_params"]),
            capacity={int(d): float(v) for d, v in data["capacity_map"].items()},
            target_params=float(data["target_params"]),
            ttt_steps=int(data.get("ttt_steps") or 1),
            max_tau=float(data.get("max_tau") or math.inf),
            max_tokens_measured=float(max(joint["tokens"])),
            batch=data.get("batch") or [],
            tokens_depth=data.get("tokens_depth"),
        )

    def params_at(self, depth: int) -> float:
        """Trainable parameters at a depth: measured, or the line through the measured depths."""
        if depth in self.capacity:
            return self.capacity[depth]
        if len(self.capacity) < 2:
            raise ValueError(f"depth {depth}: not measured, and one measured depth cannot be extrapolated")
        d, p = zip(*sorted(self.capacity.items()), strict=True)
        slope, icpt = np.polyfit(d, p, 1)
        return float(icpt + slope * depth)

    def flops_per_token(self, depth: int) -> float:
        return 6 * self.params_at(depth) * self.ttt_steps + 2 * self.target_params

    def tau(self, tokens, params, coef: np.ndarray | None = None):
        a, b, c = self.coef if coef is None else coef
        return a + b * np.log(tokens) + c * np.log(params)


def _interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, CI)
    return float(lo), float(hi)


def extrapolated(laws: Laws, tokens: float) -> str:
    """Why a token budget is an extrapolation of these laws, or "" when it lies within the measured ones."""
    ratio = tokens / laws.max_tokens_measured
    if laws.transferred_from is not None:
        beyond = f", {ratio:.3g}x this grid's largest budget" if ratio > 1 else ""
        return (
            f"extrapolated: transferred from {laws.transferred_from}, nothing measured on this grid{beyond}"
        )
    return f"extrapolated: {ratio:.3g}x the largest measured budget" if ratio > 1 else ""


def _too_far(laws: Laws, depth: int, tokens: float, max_extrapolation: float) -> str | None:
    """The refusal for a budget beyond max_extrapolation x the largest measured (or transfer-anchored) one."""
    if tokens <= laws.max_tokens_measured * max_extrapolation:
        return None
    return (f"depth {depth}: needs {tokens:.3g} tokens, more than {max_extrapolation:g}x the largest "
            f"measured budget ({laws.max_tokens_measured:.3g}); raise --max-extrapolation to allow it")  # fmt: skip


def _compute_budgets(
    laws: Laws, compute: float, depths: list[int], max_extrapolation: float
) -> list[tuple[int, float, float]]:
    """(depth, params, tokens) for each depth that `compute` training FLOPs keep within max_extrapolation;
    Unreachable naming every depth when none is."""
    kept, why = [], []
    for depth in depths:
        p = laws.params_at(depth)
        tokens = compute / laws.flops_per_token(depth)
        refusal = _too_far(laws, depth, tokens, max_extrapolation)
        if refusal:
            why.append(refusal)
        else:
            kept.append((depth, p, tokens))
    if not kept:
        raise Unreachable(f"compute {compute:.3g} FLOPs is out of the fitted law's range: " + "; ".join(why))
    return kept


def measured_speedups(laws: Laws) -> list[float]:
    """Every speed-up the batch axis measured (any batch size, any shape)."""
    return [
        float(m["speedup"]) for r in laws.batch for m in r["shapes"].values() if m.get("speedup") is not None
    ]


def outside_measured(laws: Laws, speedup: float) -> str:
    """A warning when a predicted speed-up lies outside the range of every measured one ("" inside it, or
    when nothing was measured): the cost model then extrapolates, e.g. scaling a draft cost it never timed."""
    seen = measured_speedups(laws)
    if not seen or min(seen) <= speedup <= max(seen):
        return ""
    side = "above" if speedup > max(seen) else "below"
    return (f"warning: predicted speed-up {speedup:.2f} lies {side} every measured speed-up "
            f"({min(seen):.2f} to {max(seen):.2f}, {len(seen)} measured): an extrapolation of the cost model, "
            "not a measurement")  # fmt: skip


def tokens_for_tau(laws: Laws, tau: float, depths: list[int],
                   max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION) -> list[dict[str, Any]]:  # fmt: skip
    """One row per depth that can reach tau, cheapest training FLOPs first; Unreachable if none can."""
    if tau <= 1.0:
        raise Unreachable(f"tau={tau}: tau counts the bonus token, so every draft has tau >= 1; ask for more")
    if tau >= laws.max_tau:
        raise Unreachable(f"tau={tau}: the measured decoding shape verifies at most {laws.max_tau - 1:.0f} "
                          f"draft tokens per step, so tau < {laws.max_tau:g} whatever the training")  # fmt: skip
    a, b, c = laws.coef
    if b <= 0:
        raise Unreachable(
            f"the fitted law does not grow with tokens (b={b:.3g} <= 0): no budget reaches tau={tau}"
        )
    rows, why = [], []
    for depth in depths:
        p = laws.params_at(depth)
        tokens = math.exp((tau - a - c * math.log(p)) / b)
        refusal = _too_far(laws, depth, tokens, max_extrapolation)
        if refusal:
            why.append(refusal)
            continue
        boot = laws.boot[laws.boot[:, 1] > 0]
        samples = np.exp((tau - boot[:, 0] - boot[:, 2] * math.log(p)) / boot[:, 1])
        rows.append({"depth": depth, "params": p, "tokens": tokens, "tokens_ci95": _interval(samples),
                     "train_flops": tokens * laws.flops_per_token(depth),
                     "extrapolated": extrapolated(laws, tokens)})  # fmt: skip
    if not rows:
        raise Unreachable(f"tau={tau} is out of reach of the fitted law within its range: " + "; ".join(why))
    return sorted(rows, key=lambda r: r["train_flops"])


def _batch_row(laws: Laws, batch: int) -> dict[str, Any]:
    """The measured batch size nearest to `batch` (in log scale); the planner says which one it used."""
    if not laws.batch:
        raise ValueError("laws file has no batch-axis measurements: run the batch axis of the sweep first")
    return min(laws.batch, key=lambda r: abs(math.log(r["batch_size"]) - math.log(batch)))


def _shape_speedups(
    laws: Laws, row: dict[str, Any], depth: int, tokens: float
) -> list[tuple[str, float, float, np.ndarray]]:
    """(shape, tau, speed-up, bootstrap speed-ups) of every costed shape measured at this batch row, for a
    draft of `depth` trained on `tokens` (the module docstring's cost model)."""
    base_ms = row["baseline_step_ms"]
    p_ref = laws.params_at(row["depth"])
    ref_tau = (row["shapes"].get("tree") or {}).get("tau")
    if not ref_tau:
        raise ValueError(f"batch {row['batch_size']}: no default-tree tau measured to scale the shapes by")
    p = laws.params_at(depth)
    tau_law = laws.tau(tokens, p)
    tau_boot = laws.tau(tokens, p, laws.boot.T)
    out = []
    for shape, m in row["shapes"].items():
        if not (m.get("tau") and m.get("draft_ms") is not None and m.get("verify_ms") is not None):
            continue
        scale = m["tau"] / ref_tau
        cost = m["draft_ms"] * p / p_ref + m["verify_ms"]
        tau = max(tau_law * scale, 1.0)
        out.append((shape, tau, tau * base_ms / cost, np.maximum(tau_boot * scale, 1.0) * base_ms / cost))
    return out


def best_for_budget(laws: Laws, compute: float, batch: int, depths: list[int],
                    max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION) -> list[dict[str, Any]]:  # fmt: skip
    """Every (depth, shape) at training compute `compute` (FLOPs) and serving batch `batch`, best first."""
    row = _batch_row(laws, batch)
    out = []
    for depth, _, tokens in _compute_budgets(laws, compute, depths, max_extrapolation):
        for shape, tau, point, boot in _shape_speedups(laws, row, depth, tokens):
            out.append({"depth": depth, "tokens": tokens, "shape": shape, "tau": tau,
                        "speedup": point, "speedup_ci95": _interval(boot),
                        "tokens_per_s": point * row["batch_size"] * 1e3 / row["baseline_step_ms"],
                        "measured_batch": row["batch_size"], "extrapolated": extrapolated(laws, tokens),
                        "outside_measured": outside_measured(laws, point)})  # fmt: skip
    if not out:
        raise ValueError(f"batch {row['batch_size']}: no decoding shape with measured tau and costs")
    return sorted(out, key=lambda r: -r["tokens_per_s"])


def chain_speedups(laws: Laws, depth: int, tokens: float) -> dict[int, dict[int, float]]:
    """batch size -> {k: predicted speed-up of a chain of k drafted tokens} for a draft of `depth` trained on
    `tokens`, at every measured batch size whose shapes include chains ("chain-k<k>", vLLM's batch axis):
    what eval.laws.schedule fits the batch law to."""
    out: dict[int, dict[int, float]] = {}
    for row in laws.batch:
        ks = {int(s.removeprefix(CHAIN)): sp for s, _, sp, _ in _shape_speedups(laws, row, depth, tokens)
              if s.startswith(CHAIN) and s.removeprefix(CHAIN).isdigit()}  # fmt: skip
        if ks:
            out[int(row["batch_size"])] = ks
    return out


def tau_for_compute(laws: Laws, compute: float, depths: list[int],
                    max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION) -> list[dict[str, Any]]:  # fmt: skip
    """Every depth at training compute `compute` (FLOPs): its tokens and predicted tau, highest tau first."""
    rows = []
    for depth, p, tokens in _compute_budgets(laws, compute, depths, max_extrapolation):
        rows.append({"depth": depth, "params": p, "tokens": tokens, "tau": float(laws.tau(tokens, p)),
                     "tau_ci95": _interval(laws.tau(tokens, p, laws.boot.T)),
                     "extrapolated": extrapolated(laws, tokens)})  # fmt: skip
    return sorted(rows, key=lambda r: -r["tau"])


@dataclass(frozen=True)
class Grid:
    """Where another sweep's grid sits: its tokens axis' largest budget and depth, and what training costs
    there (eval.laws.cost.grid_of computes it from that sweep's configs)."""

    name: str
    max_tokens: float
    tokens_depth: int
    capacity: dict[int, float]  # depth -> trainable parameters of that grid's draft
    target_params: float
    ttt_steps: int


def transfer(laws: Laws, grid: Grid) -> Laws:
    """The laws carried to `grid`, assuming the two sweeps' grids correspond: the slopes b (per e-fold of
    tokens) and c (per e-fold of parameters) carry over, and a grid's largest tokens-axis budget at its
    tokens-axis depth has the same tau as the other's. Only the intercept moves, in every bootstrap refit too.
    An assumption, not a measurement: the answers are conditional until that grid's own sweep confirms them.
    The decoding costs (batch axis) are hardware- and target-specific and are dropped."""
    if laws.tokens_depth is None:
        raise ValueError("laws file does not say the tokens axis' depth (refit it with python -m eval.laws)")
    ln_t = math.log(laws.max_tokens_measured / grid.max_tokens)
    ln_p = math.log(laws.params_at(laws.tokens_depth) / grid.capacity[grid.tokens_depth])
    coef = laws.coef.copy()
    coef[0] += coef[1] * ln_t + coef[2] * ln_p
    boot = laws.boot.copy()
    boot[:, 0] += boot[:, 1] * ln_t + boot[:, 2] * ln_p
    # max_tokens_measured becomes the anchor (what --max-extrapolation counts from on this grid);
    # transferred_from keeps where the measurements were, so that every budget here is flagged.
    source = laws.transferred_from or f"a sweep measured up to {laws.max_tokens_measured:.3g} tokens"
    return Laws(coef=coef, boot=boot, capacity=dict(grid.capacity), target_params=grid.target_params,
                ttt_steps=grid.ttt_steps, max_tau=laws.max_tau, max_tokens_measured=grid.max_tokens, batch=[],
                tokens_depth=grid.tokens_depth, transferred_from=source)  # fmt: skip
