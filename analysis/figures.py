"""The figures of aape, drawn from arrays and tables with matplotlib (Agg), one page each. Figures are
returned, never saved here (:func:`analysis.runs.atomic.save_pdf` writes them).

* :func:`cross_task_figure` — class(a) × class(b) Jaccard heatmap + per-layer distribution of the
  neurons shared by the two tasks.
* :func:`within_task_figure` — class × class Jaccard heatmap + neurons per class per layer.
* :func:`ablation_matrix_figure` — ablated class × evaluated class: change in recall vs baseline
  (on-target effects on the diagonal).
* :func:`k_curve_figure` — the change in a class's own recall after zeroing its k best AAPE neurons,
  with the mean and 95% interval of the matched random sets when present.
* :func:`confusion_change_figure` — the baseline confusion (true × predicted) and, for chosen conditions,
  the change in confusion counts vs the baseline (which errors an ablation adds or removes).
* :func:`entropy_distribution_figure` — the distribution of normalised entropy of all neurons, one curve
  per model (threshold-free: no quantile bar involved).
* :func:`compare_cross_task_figure`, :func:`compare_within_task_figure` — the cross-/within-task figures
  of several models side by side on one page.
* :func:`verdict_figure` — every ablated set of a run, task by task: its change with the bootstrap
  interval, its random draws' interval, specific and unstable sets marked.
* :func:`activation_overlay_figure` — a clip's log-mel spectrogram with one neuron's activation laid over
  it where the neuron fires, and the activation over time below (the listening gallery's images).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.ablation import ALL_CLASSES  # noqa: E402


def _tick_fontsize(n: int) -> float:
    return max(3.0, min(9.0, 300.0 / max(n, 1)))


def _heatmap(
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
    ax.set_xticklabels(cols, rotation=90, fontsize=_tick_fontsize(len(cols)))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=_tick_fontsize(len(rows)))
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


def _size(n_rows: int, n_cols: int) -> tuple[float, float]:
    w = min(30.0, 6.0 + 0.18 * n_cols) + 6.0
    h = min(24.0, 4.0 + 0.18 * max(n_rows, 1))
    return w, h


def cross_task_figure(
    jac: np.ndarray,
    classes_a: list[str],
    classes_b: list[str],
    task_a: str,
    task_b: str,
    per_layer: dict[str, np.ndarray],
    sites: list[str] | None = None,
) -> Figure:
    """``jac [Ca, Cb]`` Jaccard (NaN = both empty); ``per_layer`` from
    :func:`analysis.overlap.shared_per_layer` (arrays ``[L]`` for keys ``a``, ``b``, ``shared``)."""
    fig, (ax0, ax1) = plt.subplots(
        1,
        2,
        figsize=_size(len(classes_a), len(classes_b)),
        gridspec_kw={"width_ratios": [max(len(classes_b), 4), 4 + 0.3 * len(per_layer["a"])]},
    )
    _heatmap(
        ax0,
        np.asarray(jac, dtype=float),
        classes_a,
        classes_b,
        f"Jaccard of class neuron sets: {task_a} x {task_b}",
        f"{task_b} class",
        f"{task_a} class",
        fig,
    )
    L = len(per_layer["a"])
    x = np.arange(L)
    w = 0.28
    ax1.bar(x - w, per_layer["a"], w, label=f"{task_a} (any class)")
    ax1.bar(x, per_layer["b"], w, label=f"{task_b} (any class)")
    ax1.bar(x + w, per_layer["shared"], w, label="shared by both tasks")
    ax1.set_xticks(x)
    ax1.set_xticklabels([str(l) for l in range(L)], fontsize=_tick_fontsize(L))
    ax1.set_xlabel("layer")
    ax1.set_ylabel("neurons")
    ax1.set_title("Shared neurons per layer")
    ax1.legend(fontsize=7)
    fig.suptitle(f"cross_task-{task_a}-{task_b}")
    fig.tight_layout()
    return fig


def within_task_figure(jac: np.ndarray, classes: list[str], counts: np.ndarray, task: str) -> Figure:
    """``jac [C, C]`` Jaccard between the task's class sets; ``counts [C, L]`` neurons per class per layer."""
    C, L = counts.shape
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=_size(C, C + L), gridspec_kw={"width_ratios": [max(C, 4), max(L, 4)]})
    _heatmap(
        ax0, np.asarray(jac, dtype=float), classes, classes, f"Jaccard between classes: {task}", "class", "class", fig
    )
    vmax = float(max(1, counts.max())) if counts.size else 1.0
    _heatmap(
        ax1,
        counts.astype(float),
        classes,
        [str(l) for l in range(L)],
        "Neurons per class per layer",
        "layer",
        "class",
        fig,
        vmax=vmax,
        cbar_label="neurons",
    )
    fig.suptitle(f"within_task-{task}")
    fig.tight_layout()
    return fig


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
    fs = _tick_fontsize(C)
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


def entropy_distribution_figure(values: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """``values``: task → model → normalised entropies of all (present, not dead) neurons. One panel per
    task with the empirical cumulative distribution of each model (a low tail = class-selective neurons)."""
    tasks = list(values)
    n = max(len(tasks), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for model, h in values[task].items():
            h = np.sort(np.asarray(h, dtype=float))
            if h.size:
                ax.step(h, np.arange(1, h.size + 1) / h.size, where="post", label=f"{model} ({h.size} neurons)")
        ax.set_xlim(0, 1)
        ax.set_xlabel("normalised entropy H / ln C")
        ax.set_ylabel("share of neurons ≤ x")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_axis_off()
    fig.suptitle("Normalised entropy of all neurons (no threshold)")
    fig.tight_layout()
    return fig


def compare_cross_task_figure(panels: Mapping[str, dict], task_a: str, task_b: str) -> Figure:
    """The cross-task figure of several models side by side: one column per model (``panels``: model →
    ``{"jac": [Ca, Cb], "classes_a", "classes_b", "per_layer": {"a", "b", "shared"}}``), the Jaccard heatmap
    above the per-layer distribution of the shared neurons (same axes for every model)."""
    models = list(panels)
    first = panels[models[0]]
    w, h = _size(len(first["classes_a"]), len(first["classes_b"]))
    fig, axes = plt.subplots(2, len(models), figsize=(w * 0.7 * len(models), h * 1.4), squeeze=False)
    top = max([float(max(np.max(p["per_layer"][k]) for k in ("a", "b", "shared"))) for p in panels.values()] + [1.0])
    for j, m in enumerate(models):
        p = panels[m]
        _heatmap(
            axes[0, j],
            np.asarray(p["jac"], dtype=float),
            p["classes_a"],
            p["classes_b"],
            f"{m}: {task_a} x {task_b}",
            f"{task_b} class",
            f"{task_a} class",
            fig,
        )
        ax = axes[1, j]
        L = len(p["per_layer"]["a"])
        x = np.arange(L)
        bw = 0.28
        ax.bar(x - bw, p["per_layer"]["a"], bw, label=f"{task_a} (any class)")
        ax.bar(x, p["per_layer"]["b"], bw, label=f"{task_b} (any class)")
        ax.bar(x + bw, p["per_layer"]["shared"], bw, label="shared by both tasks")
        ax.set_ylim(0, top * 1.05)
        ax.set_xticks(x)
        ax.set_xticklabels([str(l) for l in range(L)], fontsize=_tick_fontsize(L))
        ax.set_xlabel("layer")
        ax.set_ylabel("neurons")
        ax.set_title(f"{m}: shared neurons per layer", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(f"cross_task-{task_a}-{task_b}: " + " | ".join(models))
    fig.tight_layout()
    return fig


def compare_within_task_figure(panels: Mapping[str, dict], task: str) -> Figure:
    """The within-task figure of several models side by side: one column per model (``panels``: model →
    ``{"jac": [C, C], "classes", "counts": [C, L]}``), the class × class Jaccard above the neurons per class
    per layer (one colour scale for every model)."""
    models = list(panels)
    first = panels[models[0]]
    C, L = np.asarray(first["counts"]).shape
    w, h = _size(C, C)
    fig, axes = plt.subplots(2, len(models), figsize=(w * 0.7 * len(models), h * 2.0), squeeze=False)
    vmax = float(max([np.max(p["counts"]) if np.size(p["counts"]) else 0 for p in panels.values()] + [1]))
    for j, m in enumerate(models):
        p = panels[m]
        _heatmap(
            axes[0, j],
            np.asarray(p["jac"], dtype=float),
            p["classes"],
            p["classes"],
            f"{m}: Jaccard between classes",
            "class",
            "class",
            fig,
        )
        counts = np.asarray(p["counts"], dtype=float)
        _heatmap(
            axes[1, j],
            counts,
            p["classes"],
            [str(l) for l in range(counts.shape[1])],
            f"{m}: neurons per class per layer",
            "layer",
            "class",
            fig,
            vmax=vmax,
            cbar_label="neurons",
        )
    fig.suptitle(f"within_task-{task}: " + " | ".join(models))
    fig.tight_layout()
    return fig


#: Colour (RGB) of a neuron's activation drawn over a spectrogram.
OVERLAY_RGB = (1.0, 0.35, 0.0)
#: Opacity of the overlay where the activation reaches the colour scale's maximum.
OVERLAY_ALPHA = 0.45
#: Percentiles of a clip's log-mel values mapped to white and black (the quiet floor stays white).
SPEC_PERCENTILES = (40.0, 99.5)


def activation_overlay_figure(
    spec: np.ndarray,
    spec_extent: tuple[float, float],
    grid: np.ndarray,
    grid_extent: tuple[float, float],
    vmax: float,
    window: tuple[float, float],
    size: tuple[float, float] = (4.4, 2.3),
    dpi: int = 80,
) -> Figure:
    """Log-mel ``spec [mels, frames]`` (low frequencies first) with a neuron's activation ``grid [bands,
    columns]`` laid over it: each cell is coloured with opacity ∝ activation / ``vmax`` where the neuron
    fires (activation > 0); ``bands`` rows split the mel axis evenly (one row: the whole height). Below, the
    activation over time (maximum over bands) on the scale 0..``vmax``, with the time axis in seconds.
    ``spec_extent`` / ``grid_extent``: seconds covered by the first and last edges of the frames / columns;
    ``window``: the seconds shown. Lean on purpose (no tick labels but time): a gallery draws hundreds."""
    spec = np.asarray(spec, dtype=float)
    grid = np.asarray(grid, dtype=float)
    fig = plt.figure(figsize=size, dpi=dpi)
    ax = fig.add_axes((0.035, 0.33, 0.93, 0.65))
    ax_t = fig.add_axes((0.035, 0.13, 0.93, 0.19))
    m = spec.shape[0]
    lo, hi = np.percentile(spec, SPEC_PERCENTILES) if spec.size else (0.0, 1.0)
    ax.imshow(
        spec,
        origin="lower",
        aspect="auto",
        cmap="gray_r",
        interpolation="nearest",
        vmin=lo,
        vmax=max(hi, lo + 1e-6),
        extent=(spec_extent[0], spec_extent[1], 0, m),
    )
    scale = max(float(vmax), 1e-12)
    if grid.size:
        level = np.clip(np.nan_to_num(grid, nan=0.0) / scale, 0.0, 1.0)
        rgba = np.zeros(grid.shape + (4,))
        rgba[..., :3] = OVERLAY_RGB
        rgba[..., 3] = OVERLAY_ALPHA * level
        ax.imshow(
            rgba, origin="lower", aspect="auto", interpolation="nearest", extent=(grid_extent[0], grid_extent[1], 0, m)
        )
        finite = np.isfinite(grid).any(axis=0)
        over_time = np.where(finite, np.nanmax(np.where(np.isnan(grid), -np.inf, grid), axis=0), np.nan)
        edges = np.linspace(grid_extent[0], grid_extent[1], grid.shape[1] + 1)
        ax_t.stairs(np.clip(over_time, 0.0, None), edges, color=OVERLAY_RGB, fill=True, alpha=0.6)
    ax.set_xlim(*window)
    ax_t.set_xlim(*window)
    ax.set_ylim(0, m)
    ax_t.set_ylim(0.0, scale * 1.05)
    ax.set_xticks([])
    ax.set_yticks([])
    ax_t.set_yticks([])
    ax_t.xaxis.set_major_locator(MaxNLocator(6))
    ax_t.tick_params(labelsize=6, length=2, pad=1)
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
            fontsize=_tick_fontsize(len(g)),
        )
        ax.set_title(f"{task} · {model}", fontsize=9)
        ax.set_ylabel("change of own recall")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle("Ablated sets: change [bootstrap 95 %] vs random draws; red = specific, hollow = unstable", fontsize=9)
    fig.tight_layout()
    return fig
