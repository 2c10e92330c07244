"""Writers of an ablation folder: its tables, conditions and figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.runs.atomic import check_writable, save_csv, save_json, save_pdf
from analysis.runs.layout import (
    ABLATION_CONDITIONS_JSON,
    ABLATION_CONFUSION_CSV,
    ABLATION_CONFUSION_PDF,
    ABLATION_CSV,
    ABLATION_FILES,
    ABLATION_K_CURVE_PDF,
    ABLATION_MATRIX_PDF,
    ABLATION_GROUPS_CSV,
    figure_preview,
)


def check_ablation_writable(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse (before a long test pass) when any ablation result (or a figure's PNG preview) already exists
    and not ``overwrite``."""
    for f in ABLATION_FILES:
        check_writable(Path(out_dir) / f, overwrite)
        if f.endswith(".pdf"):
            check_writable(figure_preview(Path(out_dir) / f), overwrite)


def write_ablation(
    out_dir: str | os.PathLike,
    table: pd.DataFrame,
    summary: pd.DataFrame,
    conditions: dict[str, Any],
    figures: dict[str, Any],
    overwrite: bool = False,
    confusion: pd.DataFrame | None = None,
) -> None:
    """``ablation.csv`` (``table``), ``ablation_groups.csv``, ``ablation_conditions.json``,
    ``ablation_confusion.csv`` (when given) and the figures ``matrix`` / ``k_curve`` / ``confusion`` (when
    given) as PDFs with PNG previews, each atomically."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    save_csv(table, d / ABLATION_CSV, overwrite)
    save_csv(summary, d / ABLATION_GROUPS_CSV, overwrite)
    if confusion is not None:
        save_csv(confusion, d / ABLATION_CONFUSION_CSV, overwrite)
    save_json(conditions, d / ABLATION_CONDITIONS_JSON, overwrite)
    names = {"matrix": ABLATION_MATRIX_PDF, "k_curve": ABLATION_K_CURVE_PDF, "confusion": ABLATION_CONFUSION_PDF}
    for key, fig in figures.items():
        save_pdf(fig, d / names[key], overwrite, close=False, bbox_inches="tight")
