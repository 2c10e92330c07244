"""The rows one process of the statistics pass produced, spooled to raw files while predicting
(:class:`RowSpool`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from analysis.runs.layout import (
    ROW_SPOOL_PREFIX,
    SPOOL_EMBEDDING,
    SPOOL_INDEX,
    SPOOL_LABEL,
    SPOOL_META,
    SPOOL_META_OFFSETS,
    TEMP_SUFFIX,
    temp_prefix,
)


def _read_rows(path: Path, rows: np.ndarray, row_bytes: int) -> np.ndarray:
    """uint8 ``[k, row_bytes]``: fixed-size ``rows`` (any order) of a raw file, read run by run with
    ``preadv`` (no memory map, one copy of the rows)."""
    out = np.empty((rows.size, row_bytes), dtype=np.uint8)
    if rows.size == 0 or row_bytes == 0:
        return out
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    starts = np.flatnonzero(np.diff(srt, prepend=srt[0] - 2) != 1).tolist() + [int(srt.size)]
    buf = np.empty_like(out)  # rows in file order
    with open(path, "rb") as f:
        for a, b in zip(starts[:-1], starts[1:]):
            got = os.preadv(f.fileno(), [memoryview(buf[a:b]).cast("B")], int(srt[a]) * row_bytes)
            if got != (b - a) * row_bytes:
                raise ValueError(f"{path}: truncated (rows {int(srt[a])}..{int(srt[a]) + b - a - 1})")
    out[order] = buf
    return out


def _from_bytes(data: np.ndarray, dtype: type, shape: tuple[int, ...]) -> Tensor:
    return torch.from_numpy(data.view(dtype)).view(shape)


class RowSpool:
    """The rows one process produced, appended to raw files in a private folder while predicting.

    ``embedding.f32`` float32 ``[n, E]`` (empty without embeddings), ``label.bin`` int64 ``[n]`` or float32
    multi-hot ``[n, C]``, ``index.i64`` int64 ``[n]`` (dataset index), ``meta.jsonl`` ``[split, file_name]``
    per row with the lines' byte offsets in ``meta.offsets.i64``. :meth:`read` fetches any rows by position
    with plain reads, so putting them in another order needs one block of rows in memory.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n_rows = 0
        self.embed_dim: Optional[int] = None
        self.label_width: Optional[int] = None  # None: class indices; C: multi-hot rows
        self._started = False
        self._meta_end = 0
        self._files = {
            name: open(self.folder / name, "ab")
            for name in (SPOOL_EMBEDDING, SPOOL_LABEL, SPOOL_INDEX, SPOOL_META, SPOOL_META_OFFSETS)
        }

    @classmethod
    def create(cls, parent: str | os.PathLike, name: str) -> "RowSpool":
        """A new spool in a fresh folder ``<parent>/.rows-<name>.aape-<random>.tmp`` (a temporary name: what a
        killed run leaves behind is removed by :func:`analysis.runs.atomic.remove_stale_temp`)."""
        Path(parent).mkdir(parents=True, exist_ok=True)
        return cls(tempfile.mkdtemp(prefix=temp_prefix(f"{ROW_SPOOL_PREFIX}{name}"), suffix=TEMP_SUFFIX, dir=parent))

    def append(
        self,
        *,
        label: Tensor,
        index: Tensor,
        split: Sequence[str],
        file_name: Sequence[str],
        embedding: Optional[Tensor] = None,
    ) -> None:
        """Append ``n`` rows: labels ``[n]`` or ``[n, C]``, dataset indices ``[n]``, splits, file names and
        embeddings ``[n, E]`` (or None; every append must agree on shapes)."""
        n = int(index.shape[0])
        if (
            label.shape[0] != n
            or len(split) != n
            or len(file_name) != n
            or (embedding is not None and embedding.shape[0] != n)
        ):
            raise ValueError(
                f"RowSpool {self.folder}: rows disagree (index {n}, label {label.shape[0]}, "
                f"split {len(split)}, file_name {len(file_name)})"
            )
        width = int(label.shape[1]) if label.dim() == 2 else None
        dim = int(embedding.shape[1]) if embedding is not None else None
        if self._started and (width != self.label_width or dim != self.embed_dim):
            raise ValueError(
                f"RowSpool {self.folder}: rows of another shape (labels {width} vs {self.label_width}, "
                f"embeddings {dim} vs {self.embed_dim})"
            )
        self._started, self.label_width, self.embed_dim = True, width, dim
        if embedding is not None:
            self._files[SPOOL_EMBEDDING].write(embedding.detach().float().cpu().contiguous().numpy().tobytes())
        lab = label.detach().cpu()
        lab = lab.float() if width is not None else lab.long()
        self._files[SPOOL_LABEL].write(lab.contiguous().numpy().tobytes())
        self._files[SPOOL_INDEX].write(index.detach().cpu().long().contiguous().numpy().tobytes())
        lines = [(json.dumps([str(s), str(f)]) + "\n").encode("utf-8") for s, f in zip(split, file_name)]
        sizes = np.asarray([len(x) for x in lines], dtype=np.int64)
        starts = self._meta_end + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if n else sizes
        self._files[SPOOL_META].write(b"".join(lines))
        self._files[SPOOL_META_OFFSETS].write(starts.tobytes())
        self._meta_end += int(sizes.sum())
        self.n_rows += n

    def close(self) -> None:
        """Flush the files (appending the end offset of the last line); :meth:`read` works after this."""
        if self._files:
            self._files[SPOOL_META_OFFSETS].write(np.asarray([self._meta_end], dtype=np.int64).tobytes())
            for f in self._files.values():
                f.close()
            self._files = {}

    def describe(self) -> dict[str, Optional[int]]:
        """``n_rows``, ``embed_dim`` and ``label_width`` (None: class indices)."""
        return {"n_rows": self.n_rows, "embed_dim": self.embed_dim, "label_width": self.label_width}

    def read_index(self) -> Tensor:
        """int64 ``[n]`` dataset index of every row, in spool order."""
        return torch.from_numpy(np.fromfile(self.folder / SPOOL_INDEX, dtype=np.int64))

    def read(self, rows: Tensor) -> dict[str, Any]:
        """Rows ``rows`` (positions in this spool, any order) as ``{"embedding" [k, E] or None, "label",
        "index" [k], "split", "file_name"}``."""
        r = rows.cpu().long().numpy()
        k = int(r.size)
        emb = None
        if self.embed_dim is not None:
            emb = _from_bytes(
                _read_rows(self.folder / SPOOL_EMBEDDING, r, 4 * self.embed_dim), np.float32, (k, self.embed_dim)
            )
        if self.label_width is None:
            label = _from_bytes(_read_rows(self.folder / SPOOL_LABEL, r, 8), np.int64, (k,))
        else:
            label = _from_bytes(
                _read_rows(self.folder / SPOOL_LABEL, r, 4 * self.label_width), np.float32, (k, self.label_width)
            )
        index = _from_bytes(_read_rows(self.folder / SPOOL_INDEX, r, 8), np.int64, (k,))
        offs = self.folder / SPOOL_META_OFFSETS
        start = _read_rows(offs, r, 8).view(np.int64).ravel().tolist()
        stop = _read_rows(offs, r + 1, 8).view(np.int64).ravel().tolist()
        split, names = [], []
        with open(self.folder / SPOOL_META, "rb") as f:
            for a, b in zip(start, stop):
                s, name = json.loads(os.pread(f.fileno(), b - a, a).decode("utf-8"))
                split.append(s)
                names.append(name)
        return {"embedding": emb, "label": label, "index": index, "split": split, "file_name": names}

    def remove(self) -> None:
        """Close and delete the spool folder."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
