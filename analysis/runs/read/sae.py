"""Readers of a sparse-autoencoder folder: ``sae.pt`` and ``metrics.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from analysis.runs.layout import SAE_FILE, SAE_METRICS_COLUMNS, SAE_METRICS_CSV
from analysis.runs.read.loaders import _load_dict, read_table

_SAE_WEIGHTS = ("W_enc", "b_enc", "W_dec", "b_dec")


def read_sae(path: str | Path) -> dict[str, Any]:
    """An ``sae.pt`` file (a path to the file or to its SAE folder): the four weight tensors and ``config``
    (checked: shapes agree with ``config.d_in`` / ``config.d_sae``). Errors name the file."""
    p = Path(path)
    p = p / SAE_FILE if p.is_dir() else p
    d = _load_dict(p, _SAE_WEIGHTS + ("config",))
    cfg = d["config"]
    if not isinstance(cfg, dict) or not {"d_in", "d_sae", "architecture", "k", "site"} <= set(cfg):
        raise ValueError(f"{p}: 'config' must be a dict with d_in, d_sae, architecture, k and site")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    want = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for k, shape in want.items():
        if not isinstance(d[k], Tensor) or tuple(d[k].shape) != shape:
            got = tuple(d[k].shape) if isinstance(d[k], Tensor) else type(d[k]).__name__
            raise ValueError(f"{p}: '{k}' has shape {got}, expected {shape} (d_in={d_in}, d_sae={d_sae})")
    return d


def read_sae_metrics(sae_dir: str | Path) -> pd.DataFrame:
    """``metrics.csv`` of an SAE folder (checked: the contract's columns)."""
    p = Path(sae_dir) / SAE_METRICS_CSV
    t = read_table(p)
    missing = [c for c in SAE_METRICS_COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"{p}: missing columns {missing}")
    return t
