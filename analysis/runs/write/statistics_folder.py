"""The statistics run folder, written as a whole (:func:`write_run_folder`): its files go to a hidden
temporary sibling folder that is renamed into place; ``features.pt``, ``gts.pt`` and ``index.csv`` stream
from :class:`~analysis.runs.write.row_blocks.RowBlocks` block by block."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import torch
from torch import Tensor

from analysis.runs.atomic import (
    HashingFile,
    OutputExistsError,
    record,
    record_move,
    save_json,
    save_text,
    save_torch,
    temp_dir,
)
from analysis.runs.layout import (
    CLASSES,
    FEATURES,
    GTS,
    INDEX,
    INDEX_COLUMNS,
    MANIFEST,
    OVER_ZERO,
    RUN_FILES,
    STATS,
    TOP_CLIPS,
)
from analysis.runs.write.row_blocks import RowBlocks
from analysis.runs.write.tensor_file_writer import TensorFileWriter


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


def index_table(
    index: Tensor, file_names: Sequence[str], gts: Tensor, splits: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
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
    stats: dict[str, Any],
    rows: RowBlocks,
    manifest: dict[str, Any],
    top_clips: Optional[dict[str, Any]] = None,
    overwrite: bool = False,
) -> Path:
    """Write every run file into ``folder`` at once (see module docstring) and return it.

    ``rows`` streams into ``features.pt`` (when it has embeddings), ``gts.pt`` and ``index.csv`` block by
    block; ``manifest`` is completed with ``n_clips``, ``data_list_sha256`` (:func:`data_list_sha256` of
    index.csv) and ``features`` (embeddings written). ``top_clips`` (when given) goes to ``top_clips.pt``."""
    final = check_run_folder(folder, overwrite)
    tmp = temp_dir(final)
    try:
        save_torch(over_zero.float(), tmp / OVER_ZERO)
        save_text("".join(f"{c}\n" for c in classes), tmp / CLASSES)
        save_torch(stats, tmp / STATS)
        if top_clips is not None:
            save_torch(top_clips, tmp / TOP_CLIPS)
        n, sha = _write_rows(tmp, rows, classes)
        save_json(
            {**manifest, "n_clips": n, "data_list_sha256": sha, "features": rows.embed_dim is not None}, tmp / MANIFEST
        )
        _replace_dir(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_rows(tmp: Path, rows: RowBlocks, classes: Sequence[str]) -> tuple[int, str]:
    """``features.pt``, ``gts.pt`` and ``index.csv`` from ``rows``; returns (rows, data-list sha256)."""
    n = rows.n_rows
    feats = (
        TensorFileWriter(tmp / FEATURES, n, (rows.embed_dim,), torch.float32) if rows.embed_dim is not None else None
    )
    gts = (
        TensorFileWriter(tmp / GTS, n, (), torch.int64)
        if rows.label_width is None
        else TensorFileWriter(tmp / GTS, n, (rows.label_width,), torch.float32)
    )
    sha = hashlib.sha256((",".join(INDEX_COLUMNS[1:]) + "\n").encode("utf-8"))
    done = 0
    with open(tmp / INDEX, "wb") as raw:
        csv = HashingFile(raw)
        csv.write((",".join(INDEX_COLUMNS) + "\n").encode("utf-8"))
        for block in rows.blocks:
            k = int(block["index"].shape[0])
            if feats is not None:
                feats.write(block["embedding"].float())
            gts.write(block["label"].long() if rows.label_width is None else block["label"].float())
            table = index_table(block["index"], block["file_name"], block["label"], block["split"], classes)
            table["row"] = range(done, done + k)
            csv.write(table.to_csv(index=False, header=False).encode("utf-8"))
            sha.update(table[INDEX_COLUMNS[1:]].to_csv(index=False, header=False).encode("utf-8"))
            done += k
        csv.flush()
        os.fsync(raw.fileno())
    record(tmp / INDEX, csv.sha.hexdigest(), csv.size)
    if done != n:
        raise ValueError(f"{tmp}: {done} rows written, {n} announced")
    if feats is not None:
        feats.close()
    gts.close()
    return n, sha.hexdigest()


def _replace_dir(src: Path, dst: Path, overwrite: bool) -> None:
    """Move the files of folder ``src`` into ``dst``: one atomic rename of the folder when ``dst`` does
    not exist, else one atomic rename per file (other files already in ``dst`` are left alone; run files
    the new run did not write, e.g. ``features.pt`` of a run now made without embeddings, are removed)."""
    if not dst.exists():
        os.replace(src, dst)
        record_move(src, dst)
        return
    check_run_folder(dst, overwrite)  # again: another process may have written meanwhile
    for f in RUN_FILES:
        if (src / f).exists():
            os.replace(src / f, dst / f)
            record_move(src / f, dst / f)
        elif (dst / f).exists():
            os.unlink(dst / f)
    src.rmdir()
