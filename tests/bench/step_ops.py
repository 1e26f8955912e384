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
