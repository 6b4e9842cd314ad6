"""PCK curve plots (matplotlib, Agg canvas: no display and no global pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_pck_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    title: str | None = None,
    xlabel: str = "error threshold (mm)",
    ylabel: str = "PCK",
) -> Path:
    """Plot one or more PCK curves into a PNG.

    curves: name -> (thresholds_mm (T,), pck (T,) in [0, 1]); the legend shows each curve's
    normalised AUC over its threshold range. Returns the written path.
    """
    if not curves:
        raise ValueError(f"save_pck_plot({path}): no curves given")
    fig = Figure(figsize=(5.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, (thr, pck) in curves.items():
        thr = np.asarray(thr, dtype=np.float64).reshape(-1)
        pck = np.asarray(pck, dtype=np.float64).reshape(-1)
        if thr.shape != pck.shape or thr.size < 2:
            raise ValueError(
                f"save_pck_plot({path}): curve {name!r} needs thresholds and pck of equal length >= 2, "
                f"got {thr.size} and {pck.size}"
            )
        area = np.trapezoid(pck, thr) / (thr[-1] - thr[0])
        ax.plot(thr, pck, label=f"{name} (AUC {area:.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
