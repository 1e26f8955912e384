"""PNG plots of a fitted law: the points, the fitted curve with its 95 % bootstrap band (log x axis), and
the residuals underneath."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.laws.fit import Fit


def plot_fit(fit: Fit, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    fig = Figure(figsize=(6.4, 5.2), dpi=100)  # Figure + Agg: no pyplot global state
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    grid = np.geomspace(fit.x.min(), fit.x.max(), 100)
    lo, hi = fit.band(grid)
    top.fill_between(grid, lo, hi, alpha=0.25, color="C0", label="95% bootstrap band")
    top.plot(grid, fit.predict(grid), color="C0", label=f"{fit.law.formula}  (R^2 {fit.r2:.3f})")
    top.plot(fit.x, fit.y, "o", color="C3", label="measured")
    top.set_xscale("log")
    top.set_ylabel(ylabel)
    top.set_title(title)
    top.legend(fontsize="small")
    bottom.axhline(0.0, color="gray", lw=0.8)
    bottom.plot(fit.x, fit.y - fit.predict(fit.x), "o", color="C3")
    bottom.set_xlabel(xlabel)
    bottom.set_ylabel("residual")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_batch(rows: list[dict], path: Path) -> Path:
    """Measured speed-up against batch size, one line per decoding shape."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = sorted({s for r in rows for s in r["shapes"]})
    for name in names:
        pts = [(r["batch_size"], r["shapes"][name]["speedup"]) for r in rows
               if r["shapes"].get(name, {}).get("speedup") is not None]  # fmt: skip
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=name)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("decoding batch size")
    ax.set_ylabel("speed-up over the target alone")
    ax.set_title("Speed-up vs batch size by decoding shape (T=0)")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path)
    return path
