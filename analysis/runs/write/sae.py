"""Writers of a sparse-autoencoder folder and of the neurons-vs-features table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.runs.atomic import check_writable, save_csv, save_torch
from analysis.runs.layout import (
    NEURONS_VS_FEATURES_COLUMNS,
    NEURONS_VS_FEATURES_CSV,
    SAE_FILE,
    SAE_METRICS_COLUMNS,
    SAE_METRICS_CSV,
)


def write_sae(
    sae_dir: str | os.PathLike, weights: dict[str, Any], metrics: dict[str, Any], overwrite: bool = False
) -> Path:
    """An SAE folder: ``sae.pt`` (the dict of :meth:`SparseAutoencoder.file_dict`) and its one-row
    ``metrics.csv`` (:data:`SAE_METRICS_COLUMNS`), each written atomically."""
    d = Path(sae_dir)
    missing = [c for c in SAE_METRICS_COLUMNS if c not in metrics]
    if missing:
        raise ValueError(f"SAE metrics for {d} lack {missing}")
    check_writable(d / SAE_FILE, overwrite)
    check_writable(d / SAE_METRICS_CSV, overwrite)
    d.mkdir(parents=True, exist_ok=True)
    save_torch(weights, d / SAE_FILE, overwrite=overwrite)
    save_csv(pd.DataFrame([{c: metrics[c] for c in SAE_METRICS_COLUMNS}]), d / SAE_METRICS_CSV, overwrite=overwrite)
    return d


def write_neurons_vs_features(compare_dir: str | os.PathLike, table: pd.DataFrame, overwrite: bool = False) -> Path:
    """``compare/neurons_vs_features.csv`` (:data:`NEURONS_VS_FEATURES_COLUMNS`)."""
    missing = [c for c in NEURONS_VS_FEATURES_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"neurons-vs-features table lacks columns {missing}")
    path = Path(compare_dir) / NEURONS_VS_FEATURES_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_csv(table[NEURONS_VS_FEATURES_COLUMNS], path, overwrite=overwrite)
