"""Readers of a tuning folder: the tuning table and curves of one stimulus dimension."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from analysis.runs.layout import tuning_csv, tuning_pt
from analysis.runs.read.loaders import _load_dict, read_table

#: Columns every tuning table has (``tuning/<dimension>.csv``).
TUNING_REQUIRED = ("unit", "site", "preferred_value", "bandwidth", "selectivity", "layer")


def read_tuning_table(tuning_dir: str | Path, dimension: str) -> pd.DataFrame:
    """``<tuning_dir>/<dimension>.csv`` (checked: the tuning columns are there)."""
    p = Path(tuning_dir) / tuning_csv(dimension)
    t = read_table(p)
    missing = [c for c in TUNING_REQUIRED if c not in t.columns]
    if missing:
        raise ValueError(f"{p}: missing columns {missing}")
    t["site"] = t["site"].astype(str)
    return t


def read_tuning_curves(tuning_dir: str | Path, dimension: str) -> dict[str, Any]:
    """``<tuning_dir>/<dimension>.pt`` (checked: ``values`` [V] and ``p_active`` [L, N, V] agree)."""
    p = Path(tuning_dir) / tuning_pt(dimension)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found (written by the tuning stage, python -m analysis tuning)")
    d = _load_dict(p, ("values", "p_active", "sites", "site_neurons", "dimension"))
    V = len(d["values"])
    if not isinstance(d["p_active"], Tensor) or d["p_active"].dim() != 3 or d["p_active"].shape[-1] != V:
        raise ValueError(f"{p}: 'p_active' must be a tensor [L, N, {V}]")
    return d
