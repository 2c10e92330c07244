"""Readers of a probe folder (``probe_results.csv``, its best checkpoint) and of Lightning checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from torch import Tensor

from analysis.runs.layout import PROBE_RESULTS
from analysis.runs.read.loaders import load_tensor_file


def read_probe_results(probe_dir: str | Path) -> pd.DataFrame:
    """``probe_results.csv`` (seed rows, then ``mean`` and ``std``); column ``seed`` as text."""
    csv = Path(probe_dir) / PROBE_RESULTS
    if not csv.exists():
        raise FileNotFoundError(f"{csv} not found; fit the probe first (python -m analysis probe)")
    return pd.read_csv(csv, dtype={"seed": str})


def best_checkpoint(probe_dir: str | Path) -> Path:
    """The checkpoint of the seed with the highest validation score in ``probe_results.csv`` (ties: the
    first seed listed). Chosen on validation, never on test."""
    d = Path(probe_dir)
    df = read_probe_results(d)
    df = df[~df["seed"].isin(["mean", "std"])]
    if df.empty:
        raise ValueError(f"{d / PROBE_RESULTS}: no seed rows")
    best = df.iloc[int(df["val_score"].to_numpy().argmax())]
    p = d / str(best["checkpoint"])
    if not p.exists():
        raise FileNotFoundError(f"{p} (listed in {d / PROBE_RESULTS}) not found")
    return p


def read_checkpoint_epoch(path: str | Path) -> int:
    """The ``epoch`` of a Lightning checkpoint (read with ``weights_only=True``)."""
    return int(read_lightning_checkpoint(path)["epoch"])


def read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint (``weights_only=True``), checked: a dict with ``state_dict`` (name →
    tensor), ``epoch`` and, if present, ``hyper_parameters`` as a dict."""
    ckpt = load_tensor_file(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a Lightning checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in ("state_dict", "epoch") if k not in ckpt]
    if missing:
        raise ValueError(
            f"{path}: not a Lightning checkpoint (no {', '.join(map(repr, missing))}; "
            f"keys: {sorted(map(str, ckpt))[:10]})"
        )
    sd = ckpt["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise ValueError(f"{path}: 'state_dict' must map parameter names to tensors")
    if not isinstance(ckpt.get("hyper_parameters", {}), Mapping):
        raise ValueError(f"{path}: 'hyper_parameters' must be a mapping")
    return ckpt
