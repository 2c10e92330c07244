"""Folder-level AAPE identification: read a run folder, select neurons, write ``neurons.csv`` /
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

from analysis import io
from analysis.aape import Identification, Mode, default_top_rate, identify
from analysis.runs import NEURONS_CSV, NEURONS_PT, Run, read_run

log = logging.getLogger(__name__)
NEURONS_JSON = "neurons.json"


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
    data.update({
        "filter_bar": [result.filter_bar] * k,
        "activation_bar": [result.activation_bar] * k,
        "top_rate": [result.top_rate] * k,
        "filter_rate": [result.filter_rate] * k,
        "activation_bar_ratio": [result.activation_bar_ratio] * k,
        "mode": [result.mode] * k,
    })
    return pd.DataFrame(data)


def summary(result: Identification, run: Run) -> dict[str, object]:
    """The ``neurons.json`` content."""
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
        "warnings": result.warnings,
    }


def identify_run(
    run_dir: str | Path,
    *,
    mode: Mode = "default",
    top_rate: float | None = None,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
    top_rate_table: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> tuple[Identification, Run]:
    """Select neurons for the run in ``run_dir`` and write ``neurons.csv``, ``neurons.pt``,
    ``neurons.json`` there (atomically; refused if they exist unless ``overwrite``).

    ``top_rate=None`` uses :func:`analysis.aape.default_top_rate` of the run's task (``top_rate_table``
    overrides the built-in per-task table).
    """
    d = Path(run_dir)
    outs = [d / NEURONS_CSV, d / NEURONS_PT, d / NEURONS_JSON]
    for o in outs:
        io.check_writable(o, overwrite)
    run = read_run(d, stats=True)
    if top_rate is None:
        top_rate = default_top_rate(run.task, top_rate_table)
        log.info("%s: task %s → top_rate %s", d, run.task, top_rate)
    result = identify(run.over_zero, mode=mode, top_rate=top_rate, filter_rate=filter_rate,
                      activation_bar_ratio=activation_bar_ratio)
    table = neurons_table(result, run.classes, run.sites)
    io.save_torch(result.neurons, outs[1], overwrite)
    io.save_csv(table, outs[0], overwrite)
    io.save_json(summary(result, run), outs[2], overwrite)
    return result, run
