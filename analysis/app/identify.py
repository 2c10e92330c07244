"""``identify``: read a run folder, select neurons (:func:`analysis.aape.identify`), write ``neurons.csv`` /
``neurons.pt`` / ``neurons.json`` next to the statistics (``python -m analysis identify --run <dir>``).

``neurons.csv`` has one row per selected neuron, in rank order (lowest entropy first):

``rank, layer, site, neuron, entropy, normalised_entropy, passes_filter, p_<class>... (one per class, classes.txt
order), classes (assigned classes, ';'-joined, empty if none), n_classes, filter_bar, activation_bar,
top_rate, filter_rate, activation_bar_ratio, mode``.

``neurons.pt`` is the LAPE mask list (class → layer → LongTensor, ascending ids). ``neurons.json`` holds
the thresholds, options, counts and warnings (also when no neuron is selected).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Mapping

import pandas as pd

from analysis.aape import ACTIVATION_BAR_RATIO, FILTER_RATE, Identification, Mode, identify, resolve_top_rate
from analysis.runs.layout import NEURONS_FILES
from analysis.runs.read import Run, read_run
from analysis.runs.write import write_neurons
from analysis.runs.atomic import check_writable

log = logging.getLogger(__name__)


def neurons_table(result: Identification, classes: list[str], sites: list[str]) -> pd.DataFrame:
    """The ``neurons.csv`` table (see module docstring) for ``result``."""
    sel = result.selected
    layer = sel[:, 0].tolist()
    neuron = sel[:, 1].tolist()
    p = result.p[sel[:, 0], sel[:, 1]].double()  # [K, C]
    data: dict[str, object] = {
        "rank": list(range(1, len(layer) + 1)),
        "layer": layer,
        "site": [sites[l] for l in layer],
        "neuron": neuron,
        "entropy": result.entropy[sel[:, 0], sel[:, 1]].double().tolist(),
        "normalised_entropy": result.normalised_entropy[sel[:, 0], sel[:, 1]].double().tolist(),
        "passes_filter": result.passes_filter[sel[:, 0], sel[:, 1]].tolist(),
    }
    for c, name in enumerate(classes):
        data[f"p_{name}"] = p[:, c].tolist()
    assigned = [[classes[c] for c in row.nonzero().flatten().tolist()] for row in result.assignments]
    data["classes"] = [";".join(a) for a in assigned]
    data["n_classes"] = [len(a) for a in assigned]
    k = len(layer)
    data.update(
        {
            "filter_bar": [result.filter_bar] * k,
            "activation_bar": [result.activation_bar] * k,
            "top_rate": [result.top_rate] * k,
            "filter_rate": [result.filter_rate] * k,
            "activation_bar_ratio": [result.activation_bar_ratio] * k,
            "mode": [result.mode] * k,
        }
    )
    return pd.DataFrame(data)


def selection_record(result: Identification, run: Run) -> dict[str, object]:
    """The ``neurons.json`` content: thresholds, options, counts and warnings of one selection."""
    per_class = result.class_masks().flatten(1).sum(1).tolist()
    return {
        "run": str(run.path),
        "task": run.task,
        "mode": result.mode,
        "top_rate": result.top_rate,
        "filter_rate": result.filter_rate,
        "activation_bar_ratio": result.activation_bar_ratio,
        "filter_bar": result.filter_bar,
        "activation_bar": result.activation_bar,
        "n_requested": result.n_requested,
        "n_selected": result.n_selected,
        "n_assigned": int(result.assignments.any(1).sum()),
        "neurons_per_class": dict(zip(run.classes, per_class)),
        "classes_in_neurons_pt": len(result.neurons),
        "options": asdict(result.options),
        "min_activity": result.min_activity,
        "n_inactive": result.n_inactive,
        "warnings": result.warnings,
    }


def identify_run(
    run_dir: str | Path,
    *,
    mode: Mode = "default",
    top_rate: float | None = None,
    filter_rate: float = FILTER_RATE,
    activation_bar_ratio: float = ACTIVATION_BAR_RATIO,
    top_rate_table: Mapping[str, float] | None = None,
    min_activity: float | None = None,
    overwrite: bool = False,
) -> tuple[Identification, Run]:
    """Select neurons for the run in ``run_dir`` and write ``neurons.csv``, ``neurons.pt``,
    ``neurons.json`` there (atomically; refused if they exist unless ``overwrite``).

    Args:
        run_dir: a statistics run folder.
        mode: ``default`` (LAPE's defects fixed) or ``lape`` (LAPE's identify.py exactly).
        top_rate: share of neurons selected by lowest entropy; None = the study's value for the run's
            task (:func:`analysis.aape.resolve_top_rate`, ``top_rate_table`` overriding it per task).
        filter_rate: quantile a neuron must exceed for some class to be a candidate.
        activation_bar_ratio: quantile a selected neuron must exceed for a class to be assigned.
        top_rate_table: task → top_rate (may hold ``default``).
        min_activity: neurons whose activation probability is below it in every class are never selected
            (None: :data:`analysis.aape.MIN_ACTIVITY` in ``default`` mode, 0 in ``lape`` mode); their count
            is ``n_inactive`` of ``neurons.json``.
        overwrite: replace existing neurons files.
    """
    d = Path(run_dir)
    for name in NEURONS_FILES:
        check_writable(d / name, overwrite)
    run = read_run(d, stats=True)
    top_rate = resolve_top_rate(run.task, top_rate, top_rate_table)
    log.info("%s: task %s → top_rate %s", d, run.task, top_rate)
    result = identify(
        run.over_zero,
        mode=mode,
        top_rate=top_rate,
        filter_rate=filter_rate,
        activation_bar_ratio=activation_bar_ratio,
        min_activity=min_activity,
    )
    write_neurons(
        d, neurons_table(result, run.classes, run.sites), result.neurons, selection_record(result, run), overwrite
    )
    return result, run
