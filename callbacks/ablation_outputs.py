"""What :class:`callbacks.AblationCallback` hands on after its test pass, beside the tables: the figures
of ``ablation_*.pdf`` (drawn by :mod:`analysis.figures`), the confusion counts of chosen conditions, and
the scalars and figures it logs to the Trainer's logger."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pandas as pd
from matplotlib.figure import Figure
from torch import Tensor

from analysis import ablation as A
from analysis import figures as F


def check_condition_names(conditions: Sequence[A.Condition], names: list[str]) -> None:
    """An error listing the known conditions when a name of ``names`` (``confusion_conditions``) is not
    one of ``conditions``."""
    known = [c.name for c in conditions]
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        raise ValueError(
            f"AblationCallback: confusion_conditions {unknown} are not conditions of this run; known: {known[:20]}"
        )


def confusion_of(conditions: Sequence[A.Condition], confusion: Tensor, names: list[str]) -> dict[str, Tensor]:
    """Condition name → its confusion counts ``[C, C]`` (``confusion``: ``[K, C, C]`` in the order of
    ``conditions``); an unknown name is an error listing the known (:func:`check_condition_names`)."""
    check_condition_names(conditions, names)
    index = {c.name: i for i, c in enumerate(conditions)}
    return {n: confusion[index[n]] for n in names}


def ablation_figures(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    conditions: Sequence[A.Condition],
    classes: list[str],
    confusion: Tensor,
    chosen: Optional[list[str]] = None,
) -> dict[str, Figure]:
    """The figures ``matrix``, ``k_curve`` and ``confusion`` (the change in confusion of ``chosen``, default
    :func:`analysis.figures.default_confusion_conditions`) of one ablation run."""
    chosen = chosen or F.default_confusion_conditions(table, conditions)
    return {
        "matrix": F.ablation_matrix_figure(table, classes),
        "k_curve": F.k_curve_figure(table, summary),
        "confusion": F.confusion_change_figure(confusion_of(conditions, confusion, ["baseline", *chosen]), classes),
    }


def ablation_metrics(table: pd.DataFrame, summary: pd.DataFrame) -> dict[str, float]:
    """Scalars to log: per condition accuracy and on-target deltas (random draws left out), and the
    random-draw groups' mean on-target deltas."""
    metrics = {}
    for r in table.to_dict("records"):
        if r["kind"] == "random":
            continue
        if r["class"] == A.ALL_CLASSES:
            metrics[f"ablation/{r['condition']}/accuracy"] = r["accuracy"]
        elif r["kind"] != "baseline" and r["class"] in str(r["target"]).split("+"):
            metrics[f"ablation/{r['condition']}/delta_{r['class']}"] = r["delta"]
    for r in summary.to_dict("records"):
        if r["kind"] == "random" and r["on_target"]:
            metrics[f"ablation/{r['group']}/delta_mean_{r['class']}"] = r["delta_mean"]
    return metrics


def log_ablation(logger: Any, step: int, table: pd.DataFrame, summary: pd.DataFrame, figs: dict[str, Any]) -> None:
    """:func:`ablation_metrics` and the figures (when the logger's experiment takes figures) to ``logger``."""
    logger.log_metrics(ablation_metrics(table, summary), step=step)
    exp = getattr(logger, "experiment", None)
    if hasattr(exp, "add_figure"):
        for name, fig in figs.items():
            exp.add_figure(f"ablation/ablation_{name}", fig, global_step=step, close=False)
