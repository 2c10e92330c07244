"""Figures of tuning curves and steering curves (matplotlib figures in, nothing written here).

* :func:`class_curves_figure` — one panel per class: the tuning curves of the units selected for that
  class (thin lines), their median (bold), the class's own range of the dimension shaded when it has one
  (``octave_4`` → MIDI 60–72) and the median curve of all units (dashed) for comparison.
* :func:`steering_figure` — one panel per class: the on-target metric against the gain, the band of the
  matched random sets, the unablated baseline.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _grid(n: int, cols: int = 4) -> tuple[plt.Figure, np.ndarray]:
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def class_curves_figure(
    values: np.ndarray,
    curves: Mapping[str, np.ndarray],
    xlabel: str,
    ylabel: str,
    title: str,
    ranges: Optional[Mapping[str, tuple[float, float]]] = None,
    population: Optional[np.ndarray] = None,
) -> plt.Figure:
    """``curves``: class → ``[units, V]`` over ``values`` ``[V]``; ``population`` ``[V]`` the median curve of
    all units; ``ranges`` class → ``(lo, hi)`` shaded."""
    x = np.asarray(values, dtype=float)
    fig, axes = _grid(len(curves))
    for ax, (cls, r) in zip(axes.flat, curves.items()):
        r = np.asarray(r, dtype=float).reshape(-1, len(x))
        if ranges and cls in ranges:
            ax.axvspan(*ranges[cls], color="tab:orange", alpha=0.15, lw=0)
        for row in r:
            ax.plot(x, row, color="tab:blue", lw=0.6, alpha=0.35)
        if len(r):
            ax.plot(x, np.nanmedian(r, 0), color="tab:blue", lw=2.0, label="median of the set")
        if population is not None:
            ax.plot(x, population, color="0.3", lw=1.0, ls="--", label="median of all units")
        ax.set_title(f"{cls} ({len(r)} units)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def steering_figure(table: pd.DataFrame, title: str) -> plt.Figure:
    """``table``: rows of ``steering.csv`` of one task and metric (``class``, ``gain``, ``on_target``,
    ``random_lo``, ``random_hi``, ``baseline``)."""
    classes = list(dict.fromkeys(table["class"]))
    fig, axes = _grid(len(classes))
    for ax, cls in zip(axes.flat, classes):
        t = table[table["class"] == cls].sort_values("gain")
        g = t["gain"].to_numpy(float)
        ax.fill_between(
            g,
            t["random_lo"].to_numpy(float),
            t["random_hi"].to_numpy(float),
            color="0.6",
            alpha=0.35,
            lw=0,
            label="matched random sets",
        )
        ax.plot(g, t["on_target"].to_numpy(float), "o-", color="tab:red", lw=1.6, ms=3, label="class set")
        ax.axhline(float(t["baseline"].iloc[0]), color="0.2", lw=0.8, ls=":", label="unablated")
        ax.axvline(1.0, color="0.5", lw=0.5)
        ax.set_title(cls, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("gain g")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
