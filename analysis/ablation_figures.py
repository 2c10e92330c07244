"""Figures of an ablation run (from the ``ablation.csv`` / ``ablation_summary.csv`` tables).

* :func:`matrix_figure`: ablated class (rows: each ``class:<c>`` AAPE-set condition) × evaluated class
  (columns): change in recall vs baseline. On-target effects lie on the diagonal.
* :func:`k_curve_figure`: for each class of the top-k grid, the change in its own recall after zeroing its
  k best AAPE neurons, with the mean and 95% interval of the matched random sets when present.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.ablation import ALL_CLASSES


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def matrix_figure(table: pd.DataFrame, classes: list[str]):
    """Heatmap ``[ablated class, evaluated class]`` of the delta in recall (rows without a class set are
    left out; an empty figure says so)."""
    plt = _plt()
    rows = [c for c in classes if f"class:{c}" in set(table["condition"])]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * max(len(classes), 2), 1.0 + 0.45 * max(len(rows), 2)))
    if not rows:
        ax.text(0.5, 0.5, "no per-class ablation conditions", ha="center", va="center")
        ax.set_axis_off()
        return fig
    t = table[table["class"] != ALL_CLASSES]
    M = np.full((len(rows), len(classes)), np.nan)
    for i, c in enumerate(rows):
        sub = t[t["condition"] == f"class:{c}"].set_index("class")["delta"]
        for j, e in enumerate(classes):
            M[i, j] = sub.get(e, np.nan)
    lim = max(float(np.nanmax(np.abs(M))) if np.isfinite(M).any() else 0.0, 1e-3)
    im = ax.imshow(M, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("evaluated class")
    ax.set_ylabel("ablated class (its AAPE neurons)")
    if len(rows) * len(classes) <= 400:
        for i in range(len(rows)):
            for j in range(len(classes)):
                if np.isfinite(M[i, j]):
                    ax.text(j, i, f"{M[i, j]:+.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="change in recall")
    ax.set_title("Ablation: change in recall vs baseline")
    fig.tight_layout()
    return fig


def k_curve_figure(table: pd.DataFrame, summary: pd.DataFrame):
    """Delta of the ablated class's own recall vs k (top-k AAPE neurons), with the matched random band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    tk = table[(table["kind"] == "topk")]
    tk = tk[[c == t for c, t in zip(tk["class"], tk["target"])]]
    if tk.empty:
        ax.text(0.5, 0.5, "no top-k conditions (k_grid empty)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    for cls, g in tk.groupby("target", sort=False):
        g = g.sort_values("k")
        ks = g["k"].astype(int).to_numpy()
        line, = ax.plot(ks, g["delta"].to_numpy(), marker="o", label=f"{cls} (top-k)")
        rs = summary[(summary["kind"] == "random") & (summary["class"] == cls)
                     & summary["group"].isin([f"random:topk:{cls}:{k}" for k in ks])]
        if not rs.empty:
            rs = rs.assign(k=rs["k"].astype(int)).sort_values("k")
            ax.plot(rs["k"], rs["delta_mean"], ls="--", color=line.get_color(), label=f"{cls} (random)")
            ax.fill_between(rs["k"].to_numpy(), rs["delta_lo"].to_numpy(dtype=float),
                            rs["delta_hi"].to_numpy(dtype=float), color=line.get_color(), alpha=0.15)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("k (top-k neurons by AAPE rank)")
    ax.set_ylabel("change in the class's recall")
    ax.legend(fontsize=6)
    ax.set_title("Ablation k-curve")
    fig.tight_layout()
    return fig
