"""Writers of the AAPE selection of a run folder (``neurons.*``) and of its stability (``stability.csv``,
``threshold_sweep.csv``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from analysis.runs.atomic import check_writable, save_csv, save_json, save_torch
from analysis.runs.layout import NEURONS_CSV, NEURONS_JSON, NEURONS_PT, STABILITY_CSV, THRESHOLD_SWEEP_CSV


def write_neurons(
    run_dir: str | os.PathLike,
    table: pd.DataFrame,
    neurons: list[list[Tensor]],
    summary: dict[str, Any],
    overwrite: bool = False,
) -> list[Path]:
    """``neurons.csv`` (``table``), ``neurons.pt`` (the LAPE mask list) and ``neurons.json``
    (``summary``) of an AAPE selection, each atomically; all three are checked before any is written."""
    d = Path(run_dir)
    paths = [d / NEURONS_CSV, d / NEURONS_PT, d / NEURONS_JSON]
    for p in paths:
        check_writable(p, overwrite)
    save_torch(neurons, paths[1], overwrite)
    save_csv(table, paths[0], overwrite)
    save_json(summary, paths[2], overwrite)
    return paths


def stability_paths(run_dir: str | os.PathLike, sweep: bool = True) -> dict[str, Path]:
    """Where the stability step writes: ``stability`` (and ``threshold_sweep`` when ``sweep``)."""
    d = Path(run_dir)
    paths = {"stability": d / STABILITY_CSV}
    if sweep:
        paths["threshold_sweep"] = d / THRESHOLD_SWEEP_CSV
    return paths


def write_stability(
    run_dir: str | os.PathLike, stability: pd.DataFrame, sweep: pd.DataFrame | None, overwrite: bool = False
) -> dict[str, Path]:
    """``stability.csv`` and, when given, ``threshold_sweep.csv``, each atomically."""
    paths = stability_paths(run_dir, sweep is not None)
    save_csv(stability, paths["stability"], overwrite)
    if sweep is not None:
        save_csv(sweep, paths["threshold_sweep"], overwrite)
    return paths
