"""Writers of aape's outputs (file names: :mod:`analysis.runs.layout`).

The statistics run folder is written as a whole (:func:`write_run_folder`): files go to a hidden
temporary sibling folder that is renamed into place, so a crash never leaves a half-written run. Every
other result file is written atomically on its own (:mod:`analysis.runs.atomic`). An existing result is
an error unless ``overwrite``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import torch
from torch import Tensor

from analysis.runs.atomic import (OutputExistsError, check_writable, save_csv, save_json, save_pdf, save_text,
                                  save_torch, temp_dir)
from analysis.runs.layout import (ABLATION_CONDITIONS_JSON, ABLATION_CONFUSION_CSV, ABLATION_CONFUSION_PDF,
                                  ABLATION_CSV, ABLATION_FILES, ABLATION_K_CURVE_PDF, ABLATION_MATRIX_PDF,
                                  ABLATION_SUMMARY_CSV, CLASSES, FEATURES, GTS, INDEX,
                                  INDEX_COLUMNS, MANIFEST, NEURONS_CSV, NEURONS_JSON, NEURONS_PT, OVER_ZERO, RUN_FILES,
                                  STABILITY_CSV, STATS, THRESHOLD_SWEEP_CSV, figure_preview)


def check_run_folder(folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise :class:`OutputExistsError` if ``folder`` already holds any run file and not ``overwrite``."""
    p = Path(folder)
    if not overwrite and p.is_dir():
        present = [f for f in RUN_FILES if (p / f).exists()]
        if present:
            raise OutputExistsError(
                f"{p} already holds results ({', '.join(present)}); refusing to overwrite them "
                "(pass overwrite: true to replace them)"
            )
    return p


def label_strings(gts: Tensor, classes: Sequence[str]) -> list[str]:
    """Class names per clip; multi-label clips get their names joined by ',' (EVAR's format)."""
    if gts.dim() == 1:
        return [classes[int(i)] for i in gts]
    return [",".join(classes[j] for j in torch.nonzero(row > 0.5).flatten().tolist()) for row in gts]


def index_table(index: Tensor, file_names: Sequence[str], gts: Tensor, splits: Sequence[str],
                classes: Sequence[str]) -> pd.DataFrame:
    """The ``index.csv`` table (``row,index,file_name,label,split``), rows in features.pt order."""
    return pd.DataFrame(
        {
            "row": range(len(index)),
            "index": [int(i) for i in index],
            "file_name": list(file_names),
            "label": label_strings(gts, classes),
            "split": list(splits),
        },
        columns=INDEX_COLUMNS,
    )


def data_list_sha256(table: pd.DataFrame) -> str:
    """sha256 of the data rows used (``index,file_name,label,split`` as CSV, dataset order)."""
    text = table[["index", "file_name", "label", "split"]].to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_run_folder(
    folder: str | os.PathLike,
    *,
    over_zero: Tensor,
    classes: Sequence[str],
    features: Tensor,
    gts: Tensor,
    stats: dict[str, Any],
    index: pd.DataFrame,
    manifest: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write every run file into ``folder`` at once (see module docstring). Returns the folder."""
    final = check_run_folder(folder, overwrite)
    n = features.shape[0]
    if gts.shape[0] != n or len(index) != n:
        raise ValueError(f"{final}: features ({n} rows), gts ({gts.shape[0]}) and index.csv ({len(index)}) differ")
    if list(index.columns) != INDEX_COLUMNS:
        raise ValueError(f"{final / INDEX}: expected columns {INDEX_COLUMNS}, got {list(index.columns)}")
    tmp = temp_dir(final)
    try:
        save_torch(over_zero.float(), tmp / OVER_ZERO)
        save_text("".join(f"{c}\n" for c in classes), tmp / CLASSES)
        save_torch(features.float().contiguous(), tmp / FEATURES)
        save_torch(gts, tmp / GTS)
        save_torch(stats, tmp / STATS)
        save_csv(index, tmp / INDEX)
        save_json(manifest, tmp / MANIFEST)
        _replace_dir(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _replace_dir(src: Path, dst: Path, overwrite: bool) -> None:
    """Move the files of folder ``src`` into ``dst``: one atomic rename of the folder when ``dst`` does
    not exist, else one atomic rename per file (other files already in ``dst`` are left alone)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    check_run_folder(dst, overwrite)  # again: another process may have written meanwhile
    for f in RUN_FILES:
        os.replace(src / f, dst / f)
    src.rmdir()


def write_neurons(run_dir: str | os.PathLike, table: pd.DataFrame, neurons: list[list[Tensor]],
                  summary: dict[str, Any], overwrite: bool = False) -> list[Path]:
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


def check_ablation_writable(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse (before a long test pass) when any ablation result (or a figure's PNG preview) already exists
    and not ``overwrite``."""
    for f in ABLATION_FILES:
        check_writable(Path(out_dir) / f, overwrite)
        if f.endswith(".pdf"):
            check_writable(figure_preview(Path(out_dir) / f), overwrite)


def write_ablation(out_dir: str | os.PathLike, table: pd.DataFrame, summary: pd.DataFrame,
                   conditions: dict[str, Any], figures: dict[str, Any], overwrite: bool = False,
                   confusion: pd.DataFrame | None = None) -> None:
    """``ablation.csv`` (``table``), ``ablation_summary.csv``, ``ablation_conditions.json``,
    ``ablation_confusion.csv`` (when given) and the figures ``matrix`` / ``k_curve`` / ``confusion`` (when
    given) as PDFs with PNG previews, each atomically."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    save_csv(table, d / ABLATION_CSV, overwrite)
    save_csv(summary, d / ABLATION_SUMMARY_CSV, overwrite)
    if confusion is not None:
        save_csv(confusion, d / ABLATION_CONFUSION_CSV, overwrite)
    save_json(conditions, d / ABLATION_CONDITIONS_JSON, overwrite)
    names = {"matrix": ABLATION_MATRIX_PDF, "k_curve": ABLATION_K_CURVE_PDF, "confusion": ABLATION_CONFUSION_PDF}
    for key, fig in figures.items():
        save_pdf(fig, d / names[key], overwrite, close=False, bbox_inches="tight")


def stability_paths(run_dir: str | os.PathLike, sweep: bool = True) -> dict[str, Path]:
    """Where the stability step writes: ``stability`` (and ``threshold_sweep`` when ``sweep``)."""
    d = Path(run_dir)
    paths = {"stability": d / STABILITY_CSV}
    if sweep:
        paths["threshold_sweep"] = d / THRESHOLD_SWEEP_CSV
    return paths


def write_stability(run_dir: str | os.PathLike, stability: pd.DataFrame, sweep: pd.DataFrame | None,
                    overwrite: bool = False) -> dict[str, Path]:
    """``stability.csv`` and, when given, ``threshold_sweep.csv``, each atomically."""
    paths = stability_paths(run_dir, sweep is not None)
    save_csv(stability, paths["stability"], overwrite)
    if sweep is not None:
        save_csv(sweep, paths["threshold_sweep"], overwrite)
    return paths


@contextmanager
def staged_folder(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Write a whole folder at once: yields a private temporary sibling of ``dest`` to fill; when the block
    ends without error it replaces ``dest`` (an existing ``dest`` only with ``overwrite``, else
    :class:`OutputExistsError`, checked before and after), when it fails it is removed."""
    final = Path(dest)
    check_writable(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(final)
    try:
        yield tmp
        check_writable(final, overwrite)
        old = None
        if final.exists():
            old = temp_dir(final)  # a temporary name: removed by the next run if a kill leaves it
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
