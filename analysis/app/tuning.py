"""Tuning curves of a model's units from a stimulus run folder (``python -m analysis tuning``), the figures
of each class's selected units along a dimension, and the range claims of the summary.

* :func:`tuning_from_run` — statistics run folder of a stimulus set (``tuning_<dimension>``, counted with
  ``class_sums``) → ``<dest>/<dimension>.pt`` + ``<dest>/<dimension>.csv`` (:mod:`analysis.tuning`);
* :func:`class_figure` — the curves of the units each class of a task's run folder selected
  (``neurons.pt``), grouped by class → ``<dest>/<dimension>-<task>.pdf`` (+ PNG), and TensorBoard;
* :func:`range_rows` — for each class with a range on the dimension (``octave_<o>`` on pitch), the share
  of its units whose preferred value lies in that range, with its Wilson interval and the random-unit
  comparison (exact hypergeometric over all units with a preferred value): the rows of
  ``report/tuning_ranges.csv``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pandas as pd
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.tensorboard import SummaryWriter

from analysis import tuning as TU
from analysis.steering import check_gains
from analysis.runs.atomic import save_pdf
from analysis.runs.layout import tuning_figure_name
from analysis.runs.read import read_classes, read_neurons, read_stats, read_tuning_curves, read_tuning_table
from analysis.runs.write import write_tuning
from analysis.tuning_figures import class_curves_figure
from datamodules.stimuli import DIMENSIONS, label_value

log = logging.getLogger(__name__)
CURVE_LABELS = {"p_active": "P(active | value)", "mean": "mean activation"}


@dataclass
class TuningOptions:
    """The pipeline's ``tuning`` section.

    Attributes:
        dimensions: stimulus dimensions to measure (:data:`datamodules.stimuli.DIMENSIONS`); none = no tuning.
        values: dimension → its values (default: the dimension's own grid).
        clips_per_value: clips per value (fresh random nuisance parameters each).
        duration: clip length in seconds.
        source: ``tone`` (harmonic), ``sine`` (pure) or ``soundfont`` (GM instruments) for pitch and loudness.
        seed: seed of the stimuli (default: the pipeline's).
        curve: the curve the preferred value, bandwidth and selectivity are read from.
        batch_size: clips per batch of the counting pass (default: ``data.batch_size``).
    """

    dimensions: list[str] = field(default_factory=list)
    values: Optional[dict[str, list[float]]] = None
    clips_per_value: PositiveInt = 4
    duration: float = 1.0
    source: Literal["tone", "sine", "soundfont"] = "tone"
    seed: Optional[int] = None
    curve: Literal["p_active", "mean"] = "p_active"
    batch_size: Optional[PositiveInt] = None

    def __post_init__(self) -> None:
        bad = [d for d in self.dimensions if d not in DIMENSIONS]
        if bad:
            raise ValueError(f"dimensions: unknown {bad}; available: {sorted(DIMENSIONS)}")
        extra = sorted(set(self.values or {}) - set(self.dimensions))
        if extra:
            raise ValueError(f"values: {extra} not among the dimensions {self.dimensions}")


@dataclass
class SteeringOptions:
    """The pipeline's ``steering`` section (:class:`callbacks.SteeringCallback` on every task's class sets).

    Attributes:
        enabled: run the steering stages.
        gains: the gain grid (1 = the unablated model, read from the baseline pass).
        random_draws: matched random sets per class set, the same at every gain.
        conditions_per_pass: (set, gain) conditions per forward.
        batch_size: test batch size (default: the ablation's, else ``data.batch_size``).
        models: steer only these models of the config (default: every model).
        tasks: steer only on these tasks of the config (default: every task).
    """

    enabled: bool = False
    gains: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0])
    random_draws: NonNegativeInt = 8
    conditions_per_pass: PositiveInt = 8
    batch_size: Optional[PositiveInt] = None
    models: Optional[list[str]] = None
    tasks: Optional[list[str]] = None

    def __post_init__(self) -> None:
        check_gains(self.gains)


def tuning_from_run(
    run_dir: str | Path, dimension: str, dest: str | Path, curve: str = "p_active", overwrite: bool = False
) -> pd.DataFrame:
    """Curves and table of every unit of the stimulus run folder ``run_dir`` along ``dimension``, written to
    ``dest``; returns the table."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"Unknown stimulus dimension {dimension!r}; available: {sorted(DIMENSIONS)}")
    if curve not in TU.CURVES:
        raise ValueError(f"curve must be one of {TU.CURVES}, got {curve!r}")
    stats = read_stats(run_dir)
    if curve == "mean" and "act_sum_class" not in stats:
        raise ValueError(f"{Path(run_dir)}: stats.pt has no per-class sums (count with class_sums: true)")
    classes = list(stats["classes"])
    values = [label_value(dimension, c) for c in classes]
    cur = TU.tuning_curves(stats, values)
    dim = DIMENSIONS[dimension]
    table = TU.tuning_table(cur[curve], cur["values"].tolist(), stats["sites"], stats["site_neurons"], dim.categorical)
    out = {
        **cur,
        "dimension": dimension,
        "unit_of_value": dim.unit,
        "categorical": dim.categorical,
        "curve": curve,
        "sites": list(stats["sites"]),
        "site_neurons": [int(n) for n in stats["site_neurons"]],
        "classes": [classes[i] for i in cur["order"].tolist()],
    }
    write_tuning(dest, dimension, out, table, overwrite)
    return table


def class_units(run_dir: str | Path) -> dict[str, list[tuple[int, int]]]:
    """Class → the ``(layer, neuron)`` units selected for it in a task's run folder (``neurons.pt``)."""
    classes = read_classes(run_dir)
    n_layers = len(read_stats(run_dir)["sites"])
    sets = read_neurons(run_dir, len(classes), n_layers)
    return {c: [(l, int(n)) for l, t in enumerate(sets[i]) for n in t.tolist()] for i, c in enumerate(classes)}


def _class_curves(curves: dict[str, Any], units: dict[str, list[tuple[int, int]]], curve: str) -> dict[str, np.ndarray]:
    c = curves[curve]
    return {
        cls: np.stack([c[l, n].numpy() for l, n in us]) if us else np.zeros((0, c.shape[-1]))
        for cls, us in units.items()
    }


def class_figure(
    tuning_dir: str | Path,
    dimension: str,
    task: str,
    task_run: str | Path,
    overwrite: bool = False,
    tensorboard: Optional[str | Path] = None,
) -> Path:
    """The curves of each class's units of ``task_run`` along ``dimension``
    → ``<tuning_dir>/<dimension>-<task>.pdf`` (+ PNG; and TensorBoard when ``tensorboard``)."""
    cur = read_tuning_curves(tuning_dir, dimension)
    curve = cur.get("curve", "p_active")
    units = class_units(task_run)
    per_class = _class_curves(cur, units, curve)
    ranges = {c: r for c in units if dimension == "pitch" and (r := TU.octave_range(c)) is not None}
    allc = cur[curve].reshape(-1, cur[curve].shape[-1]).numpy()
    population = np.nanmedian(allc[np.isfinite(allc).all(1)], 0)
    fig = class_curves_figure(
        cur["values"].numpy(),
        per_class,
        f"{dimension} ({cur['unit_of_value']})",
        CURVE_LABELS[curve],
        f"{task}: each class's units along {dimension}",
        ranges,
        population,
    )
    path = Path(tuning_dir) / tuning_figure_name(dimension, task)
    if tensorboard is not None:
        with SummaryWriter(str(tensorboard)) as w:
            w.add_figure(f"tuning/{dimension}/{task}", fig, close=False)
    save_pdf(fig, path, overwrite, bbox_inches="tight")
    return path


def range_rows(model: str, dimension: str, task: str, tuning_dir: str | Path, task_run: str | Path) -> list[dict]:
    """Rows of ``tuning_ranges.csv`` for the classes of ``task`` that have a range on ``dimension``."""
    if dimension != "pitch":
        return []
    table = read_tuning_table(tuning_dir, dimension)
    pref = {(int(l), int(u)): v for l, u, v in zip(table["layer"], table["unit"], table["preferred_value"])}
    defined = np.array([v for v in pref.values() if np.isfinite(v)])
    rows = []
    for cls, us in class_units(task_run).items():
        rng = TU.octave_range(cls)
        if rng is None or not us:
            continue
        lo, hi = rng
        p = np.array([pref.get(u, np.nan) for u in us])
        p = p[np.isfinite(p)]
        share = TU.range_share(
            int(((p >= lo) & (p < hi)).sum()), len(p), int(((defined >= lo) & (defined < hi)).sum()), len(defined)
        )
        rows.append(
            {
                "model": model,
                "dimension": dimension,
                "task": task,
                "class": cls,
                "range_lo": lo,
                "range_hi": hi,
                "set_size": len(us),
                **share,
            }
        )
    return rows


def curves_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two tuning-curve dicts agree: same values and sites, ``p_active`` identical (NaN where NaN)."""
    same = lambda x, y: bool(torch.equal(torch.nan_to_num(x, nan=-7.0), torch.nan_to_num(y, nan=-7.0)))  # noqa: E731
    return same(a["values"], b["values"]) and a["sites"] == b["sites"] and same(a["p_active"], b["p_active"])
