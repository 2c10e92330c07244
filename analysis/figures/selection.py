"""Figures of the selected neuron sets: the class × class Jaccard heatmaps within a task and across two
tasks with the neurons per layer (one model, or several side by side), and the distribution of the
normalised entropy of all neurons (threshold-free)."""

from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.figures.style import figure_size, heatmap, tick_fontsize  # noqa: E402


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
        figsize=figure_size(len(classes_a), len(classes_b)),
        gridspec_kw={"width_ratios": [max(len(classes_b), 4), 4 + 0.3 * len(per_layer["a"])]},
    )
    heatmap(
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
    ax1.set_xticklabels([str(l) for l in range(L)], fontsize=tick_fontsize(L))
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
    fig, (ax0, ax1) = plt.subplots(
        1, 2, figsize=figure_size(C, C + L), gridspec_kw={"width_ratios": [max(C, 4), max(L, 4)]}
    )
    heatmap(
        ax0, np.asarray(jac, dtype=float), classes, classes, f"Jaccard between classes: {task}", "class", "class", fig
    )
    vmax = float(max(1, counts.max())) if counts.size else 1.0
    heatmap(
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
    w, h = figure_size(len(first["classes_a"]), len(first["classes_b"]))
    fig, axes = plt.subplots(2, len(models), figsize=(w * 0.7 * len(models), h * 1.4), squeeze=False)
    top = max([float(max(np.max(p["per_layer"][k]) for k in ("a", "b", "shared"))) for p in panels.values()] + [1.0])
    for j, m in enumerate(models):
        p = panels[m]
        heatmap(
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
        ax.set_xticklabels([str(l) for l in range(L)], fontsize=tick_fontsize(L))
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
    w, h = figure_size(C, C)
    fig, axes = plt.subplots(2, len(models), figsize=(w * 0.7 * len(models), h * 2.0), squeeze=False)
    vmax = float(max([np.max(p["counts"]) if np.size(p["counts"]) else 0 for p in panels.values()] + [1]))
    for j, m in enumerate(models):
        p = panels[m]
        heatmap(
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
        heatmap(
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
