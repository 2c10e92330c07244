"""Neurons vs SAE features of the same site: the rows of ``compare/neurons_vs_features.csv``.

Per (task, model, site, unit kind): ``units`` at the site, ``specific_units`` (units the AAPE selection
assigned to at least one class, at that site), ``mean_jaccard`` (mean over classes of the bootstrap Jaccard
of each class's set with the full-data set, from ``stability.csv``), ``mean_on_target_delta`` (mean over
the class-set ablations of the change in the targeted class's recall), the same per unit ablated (divided
by the set's size) on and off target, and the median normalised entropy of every live unit of the site
(threshold-free). For neurons, the selection, stability and ablation are those of the model's own run (its
class sets may span several sites); for features those of the feature model (the SAE's site).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analysis.aape import normalised_entropy


def specific_units(neurons: Sequence[Sequence[Tensor]], layer: int) -> int:
    """Distinct units of ``layer`` assigned to at least one class (``neurons``: class → layer → ids).

    >>> specific_units([[torch.tensor([1, 2]), torch.tensor([0])], [torch.tensor([2, 3]), torch.tensor([])]], 0)
    3
    """
    ids = [cls[layer].long() for cls in neurons if len(cls) > layer and cls[layer].numel()]
    return int(torch.unique(torch.cat(ids)).numel()) if ids else 0


def set_sizes(neurons: Sequence[Sequence[Tensor]], classes: Sequence[str]) -> dict[str, int]:
    """Units per class set, over every layer.

    >>> set_sizes([[torch.tensor([1, 2]), torch.tensor([0])], [torch.tensor([]), torch.tensor([])]], ["a", "b"])
    {'a': 3, 'b': 0}
    """
    return {c: int(sum(int(t.numel()) for t in layers)) for c, layers in zip(classes, neurons)}


def class_ablation_deltas(summary: pd.DataFrame, sizes: dict[str, int]) -> dict[str, float]:
    """From ``ablation_groups.csv`` rows of the class-set conditions (``kind == "class"``):
    ``mean_on_target_delta``, ``on_target_delta_per_unit`` and ``off_target_delta_per_unit`` (means over
    the conditions with a non-empty set; NaN when there is none).

    >>> s = pd.DataFrame({"group": ["class:a", "class:a", "class:b"], "kind": ["class"] * 3,
    ...                   "target": ["a", "a", "b"], "class": ["a", "b", "b"], "on_target": [True, False, True],
    ...                   "delta_mean": [-0.8, -0.1, -0.2]})
    >>> {k: round(v, 3) for k, v in class_ablation_deltas(s, {"a": 4, "b": 2}).items()}
    {'mean_on_target_delta': -0.5, 'on_target_delta_per_unit': -0.15, 'off_target_delta_per_unit': -0.025}
    """
    rows = summary[summary["kind"] == "class"] if "kind" in summary.columns else summary.iloc[0:0]
    on, on_unit, off_unit = [], [], []
    for _, r in rows.iterrows():
        size = sizes.get(str(r["target"]), 0)
        d = float(r["delta_mean"])
        if size == 0 or math.isnan(d):
            continue
        if bool(r["on_target"]):
            on.append(d)
            on_unit.append(d / size)
        else:
            off_unit.append(d / size)

    def mean(v: list[float]) -> float:
        return float(np.mean(v)) if v else float("nan")

    return {
        "mean_on_target_delta": mean(on),
        "on_target_delta_per_unit": mean(on_unit),
        "off_target_delta_per_unit": mean(off_unit),
    }


def mean_jaccard(stability: Optional[pd.DataFrame]) -> float:
    """Mean over classes of ``stability.csv``'s ``mean_jaccard`` (NaN without stability)."""
    if stability is None or "mean_jaccard" not in stability.columns or stability.empty:
        return float("nan")
    v = pd.to_numeric(stability["mean_jaccard"], errors="coerce").dropna()
    return float(v.mean()) if len(v) else float("nan")


def site_entropies(over_zero: Tensor, layer: int) -> Tensor:
    """Normalised entropy ``[n]`` of the live units of ``layer`` (NaN ones dropped)."""
    h = normalised_entropy(over_zero)[layer]
    return h[~torch.isnan(h)]


def comparison_row(
    task: str,
    model: str,
    site: str,
    unit_kind: str,
    units: int,
    neurons: Sequence[Sequence[Tensor]],
    classes: Sequence[str],
    layer: int,
    over_zero: Tensor,
    stability: Optional[pd.DataFrame],
    summary: Optional[pd.DataFrame],
    feature_model: str,
) -> dict[str, object]:
    """One row of the table (module docstring)."""
    deltas = (
        class_ablation_deltas(summary, set_sizes(neurons, classes))
        if summary is not None
        else {
            "mean_on_target_delta": float("nan"),
            "on_target_delta_per_unit": float("nan"),
            "off_target_delta_per_unit": float("nan"),
        }
    )
    h = site_entropies(over_zero, layer)
    return {
        "task": task,
        "model": model,
        "site": site,
        "unit_kind": unit_kind,
        "units": int(units),
        "specific_units": specific_units(neurons, layer),
        "mean_jaccard": mean_jaccard(stability),
        **deltas,
        "median_normalized_entropy": float(h.median()) if h.numel() else float("nan"),
        "feature_model": feature_model,
    }
