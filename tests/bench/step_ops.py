"""Each cut in the objectives' per-step work, old form vs new, side by side on one micro-batch's shapes.

Used by tests/bench/bench_train_breakdown.py (`--ops`). One thread, as each rank runs under torch.distributed.run;
old and new alternate within each repeat and the median is kept, so load on the machine hits both alike. Each
pair is also checked for identical results (and gradients), the condition for keeping the cut.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from train.losses import divergence_per_position, select_vocab, top1_ids


def _old_soft_ce(draft_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """divergence_per_position("soft_ce") as it was: both (..., V) tensors divided by the temperature."""
    log_q = torch.log_softmax(draft_logits.float() / temperature, dim=-1)
    log_p = torch.log_softmax(target_logits.float() / temperature, dim=-1)
    return -(log_p.exp() * log_q).sum(-1)


def _fwd_bwd(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], d: torch.Tensor, t: torch.Tensor):  # noqa: ANN202
    x = d.detach().requires_grad_()
    out = fn(x, t)
    out.sum().backward()
    return out.detach(), x.grad


def side_by_side(
    batch: int = 8, seq: int = 256, vocab: int = 4096, draft_vocab: int = 2048, repeats: int = 7
) -> list[tuple[str, float, float, bool]]:
    """(change, old ms, new ms, same result) per cut."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        target = torch.randn(batch, seq, vocab, generator=g)
        view = target[:, 1:]  # what the objectives read: the target's logits from position 1 on
        draft = torch.randn(batch, seq - 1, vocab, generator=g)
        d2t = torch.randperm(vocab, generator=g)[:draft_vocab].sort().values
        pairs = {
            "top-1 ids, 2 per position per step: argmax -> max().indices": (
                lambda: view.argmax(-1),
                lambda: top1_ids(view),
            ),
            "eagle3: target logits to the draft vocabulary, 1 per step": (
                lambda: view.index_select(-1, d2t),
                lambda: select_vocab(target, d2t)[:, 1:].contiguous(),
            ),
            "token divergence at temperature 1, fwd+bwd, 1 per step": (
                lambda: _fwd_bwd(lambda x, t: _old_soft_ce(x, t, 1.0), draft, view),
                lambda: _fwd_bwd(lambda x, t: divergence_per_position(x, t, "soft_ce", 1.0), draft, view),
            ),
        }
        rows = []
        for name, (old, new) in pairs.items():
            a, b = old(), new()
            same = (
                all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
                if isinstance(a, tuple)
                else torch.equal(a, b)
            )
            t_old, t_new = [], []
            for _ in range(repeats):
                for fn, acc in ((old, t_old), (new, t_new)):
                    t = time.perf_counter()
                    fn()
                    acc.append(time.perf_counter() - t)
            rows.append((name, statistics.median(t_old) * 1e3, statistics.median(t_new) * 1e3, same))
        return rows
    finally:
        torch.set_num_threads(threads)


def print_side_by_side() -> None:
    print(
        "\nper-step cuts in the objectives, old vs new (1 thread, one micro-batch 8 x 256, vocab 4096 -> 2048):"
    )
    print(f"  {'change':<62}{'old ms':>9}{'new ms':>9}{'new/old':>9}  same")
    for name, old, new, same in side_by_side():
        print(f"  {name:<62}{old:>9.1f}{new:>9.1f}{new / old:>9.3f}  {same}")


def _old_divergence(
    draft_logits: torch.Tensor,
    target_logits: torch.Tensor,
    kind: str = "soft_ce",
    temperature: float = 1.0,
    top_k: int | None = None,
) -> torch.Tensor:
    assert kind == "soft_ce" and top_k is None, "the side by side runs the default stage settings"
    return _old_soft_ce(draft_logits, target_logits, temperature)


OLD_OPS = {
    "select_vocab": lambda logits, ids: logits.index_select(-1, ids),
    "top1_ids": lambda logits: logits.argmax(-1),
    "divergence_per_position": _old_divergence,
}


def objective_side_by_side(draft: str, overrides: list[str], repeats: int = 5) -> tuple[float, float, bool]:
    """One real micro-batch through `forward_loss` + backward (plain torch, one process, one thread), with the
    three ops as they were patched back into the objectives vs as they are, alternating: (old ms, new ms, the
    same loss)."""
    import importlib

    from hydra import compose, initialize_config_dir

    from data.paths import CONF_DIR, register_resolvers
    from train.config import to_typed
    from train.trainer import Trainer

    modules = [importlib.import_module(m) for m in ("train.losses", f"train.drafts.{draft}.objective")]
    new_ops = {k: getattr(modules[0], k) for k in OLD_OPS}
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=[f"draft={draft}", "deepspeed=none", *overrides]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg)
        seam, module = trainer.seam, trainer.engine.module
        batch = seam.train_batch(0)
        times: dict[str, list[float]] = {"old": [], "new": []}
        losses: dict[str, float] = {}
        for r in range(repeats + 1):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                for m in modules:
                    for k, fn in (OLD_OPS if name == "old" else new_ops).items():
                        if hasattr(m, k):
                            setattr(m, k, fn)
                t = time.perf_counter()
                out = seam.forward_loss(module, batch)
                out.loss.backward()
                if r:  # the first round warms up
                    times[name].append(time.perf_counter() - t)
                losses[name] = float(out.loss.detach())
                module.zero_grad(set_to_none=True)
    finally:
        for m in modules:
            for k, fn in new_ops.items():
                if hasattr(m, k):
                    setattr(m, k, fn)
        torch.set_num_threads(threads)
    old, new = (statistics.median(times[k]) * 1e3 for k in ("old", "new"))
    return old, new, losses["old"] == losses["new"]
