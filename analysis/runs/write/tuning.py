"""Writers of a tuning folder and of the steering curves beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.runs.atomic import check_writable, save_csv, save_pdf, save_torch
from analysis.runs.layout import STEERING_CSV, STEERING_PDF, figure_preview, tuning_csv, tuning_pt


def tuning_paths(dest: str | os.PathLike, dimension: str) -> tuple[Path, Path]:
    """Where the tuning of ``dimension`` is written in a tuning folder: (curves ``.pt``, table ``.csv``)."""
    return Path(dest) / tuning_pt(dimension), Path(dest) / tuning_csv(dimension)


def write_tuning(
    dest: str | os.PathLike, dimension: str, curves: dict[str, Any], table: pd.DataFrame, overwrite: bool = False
) -> tuple[Path, Path]:
    """The tuning curves (a dict of tensors and plain values) and the table of ``dimension``, each
    atomically; both are checked before either is written."""
    pt, csv = tuning_paths(dest, dimension)
    for p in (pt, csv):
        check_writable(p, overwrite)
    pt.parent.mkdir(parents=True, exist_ok=True)
    save_torch(curves, pt, overwrite)
    save_csv(table, csv, overwrite)
    return pt, csv


def check_steering_writable(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse (before the test pass) when ``steering.csv`` / ``steering.pdf`` (or its preview) exist."""
    for f in (STEERING_CSV, STEERING_PDF):
        check_writable(Path(out_dir) / f, overwrite)
    check_writable(figure_preview(Path(out_dir) / STEERING_PDF), overwrite)


def write_steering(
    out_dir: str | os.PathLike, table: pd.DataFrame, figure: Any = None, overwrite: bool = False
) -> Path:
    """``steering.csv`` (and ``steering.pdf`` + PNG when ``figure``) atomically; returns the CSV path."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    if figure is not None:
        save_pdf(figure, d / STEERING_PDF, overwrite, close=False, bbox_inches="tight")
    return save_csv(table, d / STEERING_CSV, overwrite)
