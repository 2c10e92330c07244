"""The report's figures, drawn in a notebook from a run's files (the same functions of
:mod:`analysis.figures` the report stages save as PDF), plus two views of the notebook API itself: one
neuron's activation probability per class, and each class set's ablation effect against its random draws.
Every function returns a matplotlib Figure and writes nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.ablation import confusion_matrix
from analysis.app.notebook.folders import RunFolders
from analysis.app.report import cross_task, entropy_values, load_task_neurons, within_task
from analysis.figures import (
    ablation_matrix_figure,
    compare_cross_task_figure,
    compare_within_task_figure,
    confusion_change_figure,
    cross_task_figure,
    default_confusion_conditions,
    entropy_distribution_figure,
    k_curve_figure,
    within_task_figure,
)
from analysis.runs.layout import ABLATION_CSV, ABLATION_GROUPS_CSV
from analysis.runs.read import read_ablation_conditions, read_ablation_confusion, read_run, read_table


def _ablation(f: RunFolders):
    if f.ablation is None:
        raise FileNotFoundError(
            f"no ablation folder for task {f.task!r} and model {f.model!r} "
            f"(the pipeline's ablation stage did not run for it)"
        )
    return f.ablation


def within_task_plot(f: RunFolders) -> Figure:
    """``within_task-<task>.pdf``: Jaccard between the task's class sets and neurons per class per layer."""
    jac, counts = within_task(load_task_neurons(f.run, f.model))
    return within_task_figure(jac, read_run(f.run, stats=False).classes, counts, f.task)


def cross_task_plot(a: RunFolders, b: RunFolders) -> Figure:
    """``cross_task-<a>-<b>.pdf``: Jaccard of the class sets of two tasks of one model, shared neurons per layer."""
    ta, tb = load_task_neurons(a.run, a.model), load_task_neurons(b.run, b.model)
    jac, per_layer = cross_task(ta, tb)
    return cross_task_figure(jac, ta.run.classes, tb.run.classes, a.task, b.task, per_layer, ta.run.sites)


def compare_within_task_plot(runs: Mapping[str, RunFolders], task: str) -> Figure:
    """``compare_within_task-<task>.pdf``: the within-task figure of several models (model → folders) side by side."""
    panels = {}
    for m, f in runs.items():
        tn = load_task_neurons(f.run, m)
        jac, counts = within_task(tn)
        panels[m] = {"jac": jac, "classes": tn.run.classes, "counts": counts}
    return compare_within_task_figure(panels, task)


def compare_cross_task_plot(pairs: Mapping[str, tuple[RunFolders, RunFolders]], task_a: str, task_b: str) -> Figure:
    """``compare_cross_task-<a>-<b>.pdf``: model → (folders of task a, of task b), one column per model."""
    panels = {}
    for m, (a, b) in pairs.items():
        ta, tb = load_task_neurons(a.run, m), load_task_neurons(b.run, m)
        jac, per_layer = cross_task(ta, tb)
        panels[m] = {"jac": jac, "classes_a": ta.run.classes, "classes_b": tb.run.classes, "per_layer": per_layer}
    return compare_cross_task_figure(panels, task_a, task_b)


def entropy_distribution_plot(runs: Mapping[str, Mapping[str, RunFolders]]) -> Figure:
    """``entropy_distribution.pdf``: task → model → folders; the normalised entropy of all neurons per model."""
    values = {
        t: {m: entropy_values(read_run(f.run, stats=False).over_zero) for m, f in per.items()}
        for t, per in runs.items()
    }
    return entropy_distribution_figure(values)


def ablation_matrix_plot(f: RunFolders) -> Figure:
    """``ablation_matrix.pdf``: change in every class's recall when each class's AAPE set is zeroed."""
    d = _ablation(f)
    return ablation_matrix_figure(read_table(d / ABLATION_CSV), list(read_ablation_conditions(d)["classes"]))


def k_curve_plot(f: RunFolders) -> Figure:
    """``ablation_k_curve.pdf``: a class's own recall change vs k (its top-k AAPE neurons), random band."""
    d = _ablation(f)
    return k_curve_figure(read_table(d / ABLATION_CSV), read_table(d / ABLATION_GROUPS_CSV))


def confusion_plot(f: RunFolders, conditions: Optional[Sequence[str]] = None) -> Figure:
    """``ablation_confusion.pdf``: the baseline confusion and its change under ``conditions`` (default: the
    ones the ablation stage draws, :func:`analysis.figures.default_confusion_conditions`)."""
    d = _ablation(f)
    table, classes = read_ablation_confusion(d)
    if conditions is None:
        conds = [SimpleNamespace(name=c["name"], kind=c["kind"]) for c in read_ablation_conditions(d)["conditions"]]
        conditions = default_confusion_conditions(read_table(d / ABLATION_CSV), conds)
    mats = {c: confusion_matrix(table, c, classes) for c in ["baseline", *conditions]}
    return confusion_change_figure(mats, classes)


def probabilities_plot(row: pd.Series, classes: Sequence[str]) -> Figure:
    """One neuron (a row of ``neurons()``): its activation probability per class, assigned classes dark."""
    p = np.array([float(row[f"p_{c}"]) for c in classes])
    assigned = set(str(row.get("classes") or "").split(";")) - {""}
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(classes), 2.8))
    ax.bar(range(len(classes)), p, color=["tab:red" if c in assigned else "tab:grey" for c in classes])
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(activation > 0 | class)")
    ax.set_title(
        f"{row['model']} on {row['task']}\nunit {row['unit']} ({row['site']}), "
        f"H/ln C = {float(row['normalised_entropy']):.3f}",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def ablation_vs_random_plot(sets: pd.DataFrame) -> Figure:
    """Per class (a ``class_sets()`` table): the change of its own recall when its AAPE set is zeroed (dot)
    against the mean and 95 % interval of its size- and layer-matched random sets (bar); red = specific."""
    t = sets[sets["neurons"] > 0].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(1.5 + 0.55 * max(len(t), 2), 3.2))
    x = np.arange(len(t))
    lo = t["random_delta_lo"].to_numpy(float)
    hi = t["random_delta_hi"].to_numpy(float)
    mean = t["random_delta_mean"].to_numpy(float)
    ax.errorbar(
        x, mean, yerr=[mean - lo, hi - mean], fmt="s", color="tab:grey", capsize=3, label="matched random (95 %)"
    )
    colours = ["tab:red" if bool(s) else "tab:blue" for s in t["specific"]]
    ax.scatter(x, t["on_target_delta"].to_numpy(float), color=colours, zorder=3, label="the class's AAPE set")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, [f"{c} ({n})" for c, n in zip(t["class"], t["neurons"])], rotation=90)
    ax.set_ylabel("change in the class's recall")
    title = " / ".join(dict.fromkeys(f"{m} {k}" for m, k in zip(t["model"], t["task"])))
    ax.set_title(f"Ablation vs random: {title}", fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
