"""The neuron-statistics run folder ``<out>/<task>_<suffix>/`` (design §5, §10).

Files (``row`` = row of ``features.pt``, rows in dataset order = ``index`` order):

* ``over_zero.pt``  float32 ``[L, N, C]`` P(activation > 0 | class); NaN for neurons that do not exist
  (ragged sites) and for classes with nothing counted.
* ``classes.txt``   one class name per line, index order.
* ``features.pt``   float32 ``[Nclips, E]`` clip embeddings.
* ``gts.pt``        int64 ``[Nclips]`` class index, or float32 multi-hot ``[Nclips, C]`` (multi-label).
* ``stats.pt``      dict: raw counts (see :mod:`analysis.activation_stats`) plus ``sites``,
  ``site_neurons``, ``classes``, ``tokens``, ``level``, ``splits``.
* ``index.csv``     columns ``row,index,file_name,label,split``.
* ``manifest.json`` provenance (config, checksums, world size, precision, policy, versions, seed, time).

The folder is written as a whole: files go to a hidden temporary sibling folder that is renamed into
place, so a crash never leaves a half-written run. An existing run is an error unless ``overwrite``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from analysis.io import OutputExistsError, save_csv, save_json, save_text, save_torch

RUN_FILES = (
    "over_zero.pt",
    "classes.txt",
    "features.pt",
    "gts.pt",
    "stats.pt",
    "index.csv",
    "manifest.json",
)
INDEX_COLUMNS = ["row", "index", "file_name", "label", "split"]


def run_folder(out_dir: str | os.PathLike, task: str, suffix: str) -> Path:
    """``<out_dir>/<task>_<suffix>``."""
    return Path(out_dir) / f"{task}_{suffix}"


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
        raise ValueError(f"{final}/index.csv: expected columns {INDEX_COLUMNS}, got {list(index.columns)}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        save_torch(over_zero.float(), tmp / "over_zero.pt")
        save_text("".join(f"{c}\n" for c in classes), tmp / "classes.txt")
        save_torch(features.float().contiguous(), tmp / "features.pt")
        save_torch(gts, tmp / "gts.pt")
        save_torch(stats, tmp / "stats.pt")
        save_csv(index, tmp / "index.csv")
        save_json(manifest, tmp / "manifest.json")
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
