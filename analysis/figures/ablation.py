"""Figures of an ablation: the ablated class × evaluated class change in recall, the k-curve against the
matched random band, the change in confusion of chosen conditions, and the verdicts of every ablated set
of a run (its change, interval and random draws; specific and unstable sets marked)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.ablation import ALL_CLASSES  # noqa: E402
from analysis.figures.style import tick_fontsize  # noqa: E402


def ablation_matrix_figure(table: pd.DataFrame, classes: list[str]):
    """Heatmap ``[ablated class, evaluated class]`` of the delta in recall (rows without a class set are
    left out; an empty figure says so)."""
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
        (line,) = ax.plot(ks, g["delta"].to_numpy(), marker="o", label=f"{cls} (top-k)")
        rs = summary[
            (summary["kind"] == "topk")
            & (summary["class"] == cls)
            & summary["group"].isin([f"topk:{cls}:{k}" for k in ks])
            & pd.to_numeric(summary["random_delta_mean"], errors="coerce").notna()
        ]
        if not rs.empty:  # each top-k set's matched random draws (mean and interval)
            rs = rs.assign(k=rs["k"].astype(int)).sort_values("k")
            ax.plot(rs["k"], rs["random_delta_mean"], ls="--", color=line.get_color(), label=f"{cls} (random)")
            ax.fill_between(
                rs["k"].to_numpy(),
                rs["random_delta_lo"].to_numpy(dtype=float),
                rs["random_delta_hi"].to_numpy(dtype=float),
                color=line.get_color(),
                alpha=0.15,
            )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("k (top-k neurons by AAPE rank)")
    ax.set_ylabel("change in the class's recall")
    ax.legend(fontsize=6)
    ax.set_title("Ablation k-curve")
    fig.tight_layout()
    return fig


#: At most this many conditions are drawn by default in the change-in-confusion figure.
MAX_CONFUSION_PANELS = 6


def default_confusion_conditions(table: pd.DataFrame, conditions: Sequence[Any]) -> list[str]:
    """Conditions drawn in ``ablation_confusion.pdf`` unless chosen: the explicit and shared ones, else the
    class conditions ordered by the change of their own class's recall (largest drop first); at most
    :data:`MAX_CONFUSION_PANELS`."""
    chosen = [c.name for c in conditions if c.kind in ("explicit", "shared")]
    if not chosen:
        own = table[(table["kind"] == "class") & (table["condition"] == "class:" + table["class"].astype(str))]
        chosen = list(own.sort_values("delta", kind="stable")["condition"])
    return chosen[:MAX_CONFUSION_PANELS]


def _matrix_panel(ax, m: np.ndarray, classes: list[str], title: str, fig: Figure, diverging: bool) -> None:
    C = len(classes)
    if diverging:
        lim = max(float(np.abs(m).max()) if m.size else 0.0, 1.0)
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        label = "change in clips"
    else:
        im = ax.imshow(
            m,
            cmap="Greys",
            vmin=0,
            vmax=max(float(m.max()) if m.size else 0.0, 1.0),
            aspect="auto",
            interpolation="nearest",
        )
        label = "clips"
    fs = tick_fontsize(C)
    ax.set_xticks(range(C), classes, rotation=90, fontsize=fs)
    ax.set_yticks(range(C), classes, fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=8)
    if C <= 20:
        for i in range(C):
            for j in range(C):
                v = int(m[i, j])
                if v:
                    ax.text(
                        j,
                        i,
                        f"{v:+d}" if diverging else str(v),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="k" if diverging or v < 0.6 * m.max() else "w",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(label)


def confusion_change_figure(confusions: Mapping[str, Any], classes: list[str]) -> Figure:
    """``confusions``: condition name → counts ``[C, C]`` (true × predicted), ``baseline`` first. Left: the
    baseline's counts; then per other condition its counts minus the baseline's (red: clips gained by a
    cell, blue: clips lost; the diagonal loses what the errors gain)."""
    names = list(confusions)
    if not names or names[0] != "baseline":
        raise ValueError("confusion_change_figure: the first condition must be 'baseline'")
    base = np.asarray(confusions["baseline"], dtype=np.int64)
    C = len(classes)
    side = min(12.0, 2.5 + 0.25 * C)
    fig, axes = plt.subplots(1, len(names), figsize=(side * len(names), side), squeeze=False)
    _matrix_panel(axes[0, 0], base, classes, "baseline confusion", fig, diverging=False)
    for ax, name in zip(axes[0, 1:], names[1:]):
        diff = np.asarray(confusions[name], dtype=np.int64) - base
        _matrix_panel(ax, diff, classes, f"{name} − baseline", fig, diverging=True)
    if len(names) == 1:
        axes[0, 0].set_title("baseline confusion (no other condition chosen)", fontsize=8)
    fig.suptitle("Ablation: change in confusion vs baseline")
    fig.tight_layout()
    return fig


def verdict_figure(sets: pd.DataFrame, unstable_below: float = 0.5) -> Figure:
    """Every ablated set of a run side by side, one panel per (task, model) (rows of
    ``report/ablation_summary.csv``): the on-target change with its paired bootstrap interval (error bar),
    the central interval of its matched random draws (grey bar), filled markers for the sets called
    specific, and sets whose mean Jaccard over replicates is below ``unstable_below`` drawn hollow with
    their class label marked ``(unstable)``."""
    keys = list(dict.fromkeys(zip(sets["task"], sets["model"])))
    n = max(len(keys), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, (task, model) in zip(axes.flat, keys):
        g = sets[(sets["task"] == task) & (sets["model"] == model)].reset_index(drop=True)
        x = np.arange(len(g))
        d = g["on_target_delta"].to_numpy(dtype=float)
        lo, hi = g["change_lo"].to_numpy(dtype=float), g["change_hi"].to_numpy(dtype=float)
        rlo, rhi = g["random_delta_lo"].to_numpy(dtype=float), g["random_delta_hi"].to_numpy(dtype=float)
        ax.bar(
            x,
            np.nan_to_num(rhi - rlo),
            bottom=np.nan_to_num(rlo),
            width=0.6,
            color="lightgrey",
            label="random draws (95 %)",
        )
        ax.errorbar(x, d, yerr=[np.nan_to_num(d - lo), np.nan_to_num(hi - d)], fmt="none", ecolor="k", capsize=3)
        jac = pd.to_numeric(g.get("stability_mean_jaccard", pd.Series(np.nan, index=g.index)), errors="coerce")
        unstable = (jac < unstable_below).to_numpy()
        specific = g["specific"].astype(bool).to_numpy()
        for i in range(len(g)):
            ax.plot(
                x[i],
                d[i],
                "o",
                color="tab:red" if specific[i] else "tab:blue",
                markerfacecolor="none" if unstable[i] else None,
                markersize=6,
            )
        ax.axhline(0.0, color="k", linewidth=0.5)
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{c} (unstable)" if u else str(c) for c, u in zip(g["class"], unstable)],
            rotation=90,
            fontsize=tick_fontsize(len(g)),
        )
        ax.set_title(f"{task} · {model}", fontsize=9)
        ax.set_ylabel("change of own recall")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle("Ablated sets: change [bootstrap 95 %] vs random draws; red = specific, hollow = unstable", fontsize=9)
    fig.tight_layout()
    return fig
