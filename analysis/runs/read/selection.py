"""Readers of the AAPE selection of a run folder (``neurons.pt``, ``neurons.csv``, ``neurons.json``) and of its
bootstrap stability (``stability.csv``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from analysis.runs.layout import NEURONS_CSV, NEURONS_JSON, NEURONS_PT, STABILITY_CSV
from analysis.runs.read.loaders import load_tensor_file, read_table


def read_neurons(run_dir: str | Path, num_classes: int, num_layers: int) -> list[list[Tensor]]:
    """``neurons.pt`` (LAPE list), padded with empty classes to ``num_classes`` (a ``lape``-mode list
    drops trailing empty classes)."""
    path = Path(run_dir) / NEURONS_PT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `python -m analysis identify --run {run_dir}` first")
    obj = load_tensor_file(path)
    if not isinstance(obj, list) or len(obj) > num_classes:
        raise ValueError(f"{path}: expected a list of at most {num_classes} classes")
    out: list[list[Tensor]] = []
    for c, layers in enumerate(obj):
        if not isinstance(layers, list) or len(layers) != num_layers:
            raise ValueError(f"{path}: class {c} must be a list of {num_layers} tensors")
        out.append([torch.as_tensor(t, dtype=torch.long) for t in layers])
    empty = [torch.zeros(0, dtype=torch.long) for _ in range(num_layers)]
    out += [list(empty) for _ in range(num_classes - len(out))]
    return out


def read_ranking(run_dir: str | Path) -> dict[tuple[int, int], float]:
    """(layer, neuron) → AAPE rank from ``neurons.csv`` (column ``rank``, else ``entropy``; lower = better)."""
    p = Path(run_dir) / NEURONS_CSV
    if not p.exists():
        raise FileNotFoundError(f"{p} not found (needed for the top-k grid)")
    df = pd.read_csv(p)
    key = "rank" if "rank" in df.columns else "entropy" if "entropy" in df.columns else None
    if key is None or not {"layer", "neuron"} <= set(df.columns):
        raise ValueError(f"{p}: needs columns layer, neuron and rank (or entropy); has {list(df.columns)}")
    return {(int(r.layer), int(r.neuron)): float(getattr(r, key)) for r in df.itertuples()}


def count_selected(run_dir: str | Path) -> int | None:
    """Rows of ``neurons.csv`` (neurons selected by lowest entropy), None when the file is absent."""
    p = Path(run_dir) / NEURONS_CSV
    return len(pd.read_csv(p)) if p.is_file() else None


def selection_warnings(run_dir: str | Path) -> list[str]:
    """Warnings the AAPE selection recorded in ``neurons.json`` (e.g. saturated quantiles); [] if absent."""
    p = Path(run_dir) / NEURONS_JSON
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: invalid JSON: {e}") from e
    return [str(w) for w in data.get("warnings", [])]


def read_stability(run_dir: str | Path) -> pd.DataFrame | None:
    """``stability.csv`` of a run folder (class names as text), None when the stability step did not run;
    the columns the report uses are checked."""
    p = Path(run_dir) / STABILITY_CSV
    if not p.is_file():
        return None
    t = read_table(p)
    missing = {"class", "mean_jaccard", "jaccard_low", "jaccard_high", "replicates"} - set(t.columns)
    if missing:
        raise ValueError(f"{p}: missing columns {sorted(missing)} (has {list(t.columns)})")
    return t
