"""What the figures of aape share: the Agg backend (set before pyplot is imported), tick label sizes
that shrink with the number of labels, page sizes that grow with the table drawn, and the annotated
heatmap of class × class tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def tick_fontsize(n: int) -> float:
    return max(3.0, min(9.0, 300.0 / max(n, 1)))


def heatmap(
    ax,
    mat: np.ndarray,
    rows: list[str],
    cols: list[str],
    title: str,
    xlabel: str,
    ylabel: str,
    fig: Figure,
    vmax: float = 1.0,
    cbar_label: str = "Jaccard",
) -> None:
    masked = np.ma.masked_invalid(mat)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    im = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=vmax)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=90, fontsize=tick_fontsize(len(cols)))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=tick_fontsize(len(rows)))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(cbar_label)
    if mat.size <= 144:
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2f}" if vmax <= 1 else f"{int(mat[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="w" if mat[i, j] < 0.6 * vmax else "k",
                    )


def figure_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    w = min(30.0, 6.0 + 0.18 * n_cols) + 6.0
    h = min(24.0, 4.0 + 0.18 * max(n_rows, 1))
    return w, h
