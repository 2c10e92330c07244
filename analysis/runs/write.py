"""Writers of aape's outputs (file names: :mod:`analysis.runs.layout`).

The statistics run folder is written as a whole (:func:`write_run_folder`): files go to a hidden
temporary sibling folder that is renamed into place, so a crash never leaves a half-written run. Every
other result file is written atomically on its own (:mod:`analysis.runs.atomic`). An existing result is
an error unless ``overwrite``.

The run folder's per-clip rows stream: while predicting, each process appends its rows to a
:class:`RowSpool` (raw files on disk); at the end the rows are put in dataset order (:class:`RowOrder`)
and written block by block (:class:`RowBlocks`) into ``features.pt`` / ``gts.pt``
(:class:`TensorFileWriter`: ordinary ``torch.save`` files written without ever holding the whole tensor)
and ``index.csv``. Memory: one block of rows plus O(clips) integers, whatever the number of clips.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analysis.runs.atomic import (
    HashingFile,
    OutputExistsError,
    check_writable,
    record,
    record_move,
    save_csv,
    save_json,
    save_pdf,
    save_text,
    save_torch,
    sha256_file,
    temp_dir,
)
from analysis.runs.layout import (
    ABLATION_CONDITIONS_JSON,
    ABLATION_CONFUSION_CSV,
    ABLATION_CONFUSION_PDF,
    ABLATION_CSV,
    ABLATION_FILES,
    ABLATION_K_CURVE_PDF,
    ABLATION_MATRIX_PDF,
    ABLATION_SUMMARY_CSV,
    CLASSES,
    FEATURES,
    GTS,
    INDEX,
    INDEX_COLUMNS,
    MANIFEST,
    NEURONS_CSV,
    NEURONS_JSON,
    NEURONS_PT,
    OVER_ZERO,
    ROW_SPOOL_PREFIX,
    RUN_FILES,
    SPOOL_EMBEDDING,
    SPOOL_INDEX,
    SPOOL_LABEL,
    SPOOL_META,
    SPOOL_META_OFFSETS,
    STABILITY_CSV,
    STATS,
    TEMP_SUFFIX,
    THRESHOLD_SWEEP_CSV,
    TOP_CLIPS,
    figure_preview,
    STEERING_CSV,
    STEERING_PDF,
    temp_prefix,
    tuning_csv,
    tuning_pt,
)
from analysis.runs.layout import (
    NEURONS_VS_FEATURES_COLUMNS,
    NEURONS_VS_FEATURES_CSV,
    SAE_FILE,
    SAE_METRICS_COLUMNS,
    SAE_METRICS_CSV,
)

#: Bytes of embeddings and labels per block when assembling features.pt / gts.pt / index.csv (the memory
#: the assembly needs, whatever the number of clips).
BLOCK_BYTES = 16 * 2**20


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


# -- streamed tensor files -------------------------------------------------------------------------
class TensorFileWriter:
    """One tensor ``[rows, *row_shape]`` (float32 or int64) written into a ``torch.save`` file block by block,
    rows in order, without ever holding the whole tensor.

    ``torch.save`` writes the file's structure with an unpopulated storage (``torch.serialization.skip_data``
    on a placeholder mapped from an empty sparse file, so nothing is allocated); the rows are then written at
    the storage's offset in the zip archive and the record's CRC-32 is set at :meth:`close`, so the result
    is a valid zip and an ordinary ``torch.load`` file (``mmap=True`` works too). The file's sha256 is
    computed on the way (the structure before the rows, the rows as written, the small tail after them) and
    :func:`~analysis.runs.atomic.record`-ed at :meth:`close`: the rows are never read back.
    """

    _DTYPES = {torch.float32: np.float32, torch.int64: np.int64}

    def __init__(self, path: str | os.PathLike, rows: int, row_shape: Sequence[int], dtype: torch.dtype) -> None:
        if dtype not in self._DTYPES:
            raise ValueError(f"TensorFileWriter writes float32 or int64 tensors, not {dtype}")
        self.path, self.rows, self.row_shape, self.dtype = Path(path), int(rows), tuple(row_shape), dtype
        self.written = 0
        self._crc = 0
        self._file = None
        numel = self.rows * math.prod(self.row_shape)
        self._sha = hashlib.sha256()
        if numel == 0:
            torch.save(torch.zeros(self.rows, *self.row_shape, dtype=dtype), self.path)
            return
        fd, holder = tempfile.mkstemp(prefix=temp_prefix(self.path.name), suffix=TEMP_SUFFIX, dir=self.path.parent)
        os.close(fd)
        try:
            placeholder = torch.from_file(holder, shared=True, size=numel, dtype=dtype)
        finally:
            os.unlink(holder)
        with torch.serialization.skip_data():
            torch.save(placeholder.view(self.rows, *self.row_shape), self.path)
        del placeholder
        self._record, offset, self._descriptor = _storage_record(self.path)
        self._file = open(self.path, "r+b")
        self._sha.update(self._file.read(offset))  # the structure before the rows (never patched)
        self._file.seek(offset)

    def write(self, block: Tensor) -> None:
        """Append the next ``block`` ``[k, *row_shape]`` of rows."""
        if tuple(block.shape[1:]) != self.row_shape or block.dtype != self.dtype:
            raise ValueError(
                f"{self.path}: block {tuple(block.shape)} {block.dtype} does not match rows "
                f"{self.row_shape} {self.dtype}"
            )
        if self.written + block.shape[0] > self.rows:
            raise ValueError(f"{self.path}: more than {self.rows} rows written")
        if self._file is not None and block.numel():
            data = memoryview(np.ascontiguousarray(block.detach().cpu().numpy())).cast("B")
            self._file.write(data)
            self._crc = zlib.crc32(data, self._crc)
            self._sha.update(data)
        self.written += int(block.shape[0])

    def close(self) -> None:
        """Check every row was written and set the record's CRC-32 (data descriptor, central directory)."""
        if self.written != self.rows:
            raise ValueError(f"{self.path}: {self.written} rows written, {self.rows} expected")
        if self._file is None:
            if self.path.exists():
                record(self.path, sha256_file(self.path), self.path.stat().st_size)  # empty tensor: tiny
            return
        f, self._file = self._file, None
        try:
            data_end = f.tell()
            crc = struct.pack("<I", self._crc)
            if self._descriptor is not None:
                f.seek(self._descriptor)
                f.write(crc)
            f.flush()
            with zipfile.ZipFile(self.path) as z:
                start = z.start_dir
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(start)
            cd = f.read(end - start)
            pos, name = 0, self._record.encode("utf-8")
            while cd[pos : pos + 4] == b"PK\x01\x02":
                n, e, c = struct.unpack("<HHH", cd[pos + 28 : pos + 34])
                if cd[pos + 46 : pos + 46 + n] == name:
                    f.seek(start + pos + 16)
                    f.write(crc)
                    break
                pos += 46 + n + e + c
            else:
                raise ValueError(f"{self.path}: record {self._record} not in the central directory")
            f.flush()
            os.fsync(f.fileno())
            f.seek(data_end)
            self._sha.update(f.read())  # descriptor and central directory, as patched
            record(self.path, self._sha.hexdigest(), end)
        finally:
            f.close()


def _storage_record(path: Path) -> tuple[str, int, Optional[int]]:
    """(name, data offset, offset of the CRC field of its data descriptor or None) of the one storage
    record ``<archive>/data/0`` of a ``torch.save`` file."""
    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if i.filename.endswith("/data/0")]
        if len(infos) != 1:
            raise ValueError(f"{path}: expected one storage record, found {[i.filename for i in infos]}")
        info = infos[0]
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        n, e = struct.unpack("<HH", f.read(30)[26:30])
        offset = info.header_offset + 30 + n + e
        descriptor = None
        if info.flag_bits & 0x08:  # CRC and sizes follow the data
            f.seek(offset + info.file_size)
            descriptor = offset + info.file_size + (4 if f.read(4) == b"PK\x07\x08" else 0)
    return info.filename, offset, descriptor


# -- row spools ----------------------------------------------------------------------------------------
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


@dataclass
class RowOrder:
    """Dataset order of the rows of several spools (one per process): output row ``i`` is row ``row[i]`` of
    spool ``source[i]``, with dataset index ``index[i]`` (ascending). All int64 ``[N]``."""

    source: Tensor
    row: Tensor
    index: Tensor

    @classmethod
    def of(cls, indices: Sequence[Tensor]) -> "RowOrder":
        """The order of spools holding dataset ``indices`` (one int64 tensor per spool). A dataset index
        present twice is a ``RuntimeError`` (a clip predicted twice).

        >>> o = RowOrder.of([torch.tensor([0, 2, 4]), torch.tensor([1, 3])])
        >>> o.source.tolist(), o.row.tolist()
        ([0, 1, 0, 1, 0], [0, 0, 1, 1, 2])
        """
        if not indices:
            raise ValueError("RowOrder: no spools")
        index = torch.cat([i.long().cpu() for i in indices])
        source = torch.cat([torch.full((len(i),), s, dtype=torch.long) for s, i in enumerate(indices)])
        row = torch.cat([torch.arange(len(i), dtype=torch.long) for i in indices])
        order = torch.argsort(index, stable=True)
        index = index[order]
        if len(index) > 1 and bool((index[1:] == index[:-1]).any()):
            dup = index[1:][index[1:] == index[:-1]].unique().tolist()
            raise RuntimeError(f"clips predicted twice (dataset index {dup[:10]})")
        return cls(source[order], row[order], index)

    def __len__(self) -> int:
        return int(self.index.numel())

    def ranges(self, block_rows: int) -> Iterator[slice]:
        """Consecutive output row ranges of at most ``block_rows`` rows."""
        for a in range(0, len(self), block_rows):
            yield slice(a, min(a + block_rows, len(self)))

    def wanted(self, block: slice, source: int) -> Tensor:
        """Rows of spool ``source`` that fall in output range ``block``, in output order."""
        return self.row[block][self.source[block] == source]

    def assemble(self, block: slice, parts: Sequence[Optional[dict[str, Any]]]) -> dict[str, Any]:
        """Output block ``block`` from each spool's :meth:`RowSpool.read` of its :meth:`wanted` rows."""
        src = self.source[block]
        k = int(src.numel())
        where = {s: (src == s).nonzero().flatten() for s, p in enumerate(parts) if p is not None and len(p["index"])}
        out: dict[str, Any] = {"split": [None] * k, "file_name": [None] * k}
        for key in ("embedding", "label", "index"):
            filled = [(where[s], parts[s][key]) for s in where]
            if not filled or filled[0][1] is None:
                out[key] = None
                continue
            t = filled[0][1].new_empty((k, *filled[0][1].shape[1:]))
            for pos, val in filled:
                t[pos] = val
            out[key] = t
        for s, pos in where.items():
            for key in ("split", "file_name"):
                for j, v in zip(pos.tolist(), parts[s][key]):
                    out[key][j] = v
        if out["index"] is None or not torch.equal(out["index"], self.index[block]):
            raise RuntimeError("row spools returned other rows than requested")
        return out


@dataclass
class RowBlocks:
    """Rows of a run folder in dataset order, as an iterable of blocks ``{"embedding" [k, E] or None,
    "label" [k] / [k, C], "index" [k], "split", "file_name"}``: ``n_rows`` rows in all, ``embed_dim`` None
    without embeddings, ``label_width`` None for class indices (int64) or C for multi-hot (float32)."""

    n_rows: int
    embed_dim: Optional[int]
    label_width: Optional[int]
    blocks: Iterable[dict[str, Any]]

    @staticmethod
    def kind(described: Sequence[dict[str, Optional[int]]]) -> tuple[Optional[int], Optional[int]]:
        """The (embedding dim, label width) the spools agree on (spools without rows are ignored)."""
        kinds = {(d["embed_dim"], d["label_width"]) for d in described if d["n_rows"]}
        if len(kinds) != 1:
            raise ValueError(
                f"row spools disagree on (embedding dim, label width): {sorted(kinds, key=str)}"
                if kinds
                else "no clip was predicted"
            )
        return kinds.pop()

    @staticmethod
    def block_rows(described: Sequence[dict[str, Optional[int]]], block_bytes: int = BLOCK_BYTES) -> int:
        """Rows per block so that a block's embeddings and labels take about ``block_bytes``."""
        embed_dim, label_width = RowBlocks.kind(described)
        row = 4 * (embed_dim or 0) + (8 if label_width is None else 4 * label_width) + 8
        return max(1, block_bytes // row)

    @classmethod
    def ordered(
        cls,
        order: RowOrder,
        described: Sequence[dict[str, Optional[int]]],
        fetch: Callable[[slice], Sequence[Optional[dict[str, Any]]]],
        block_rows: Optional[int] = None,
    ) -> "RowBlocks":
        """Rows in ``order``; ``fetch(block)`` returns one :meth:`RowSpool.read` per spool of the rows
        :meth:`RowOrder.wanted` (e.g. gathered from other processes); ``described``: each spool's
        :meth:`RowSpool.describe`; ``block_rows`` default :meth:`block_rows`."""
        embed_dim, label_width = cls.kind(described)
        rows = block_rows or cls.block_rows(described)

        def blocks() -> Iterator[dict[str, Any]]:
            for sl in order.ranges(rows):
                yield order.assemble(sl, fetch(sl))

        return cls(len(order), embed_dim, label_width, blocks())

    @classmethod
    def from_spools(cls, spools: Sequence[RowSpool], block_rows: Optional[int] = None) -> "RowBlocks":
        """The rows of closed spools readable by this process, in dataset order."""
        order = RowOrder.of([s.read_index() for s in spools])
        return cls.ordered(
            order,
            [s.describe() for s in spools],
            lambda sl: [s.read(order.wanted(sl, i)) for i, s in enumerate(spools)],
            block_rows,
        )

    @classmethod
    def from_tensors(
        cls,
        index: Tensor,
        label: Tensor,
        split: Sequence[str],
        file_name: Sequence[str],
        embedding: Optional[Tensor] = None,
    ) -> "RowBlocks":
        """Rows held in memory (any order; sorted by dataset index here)."""
        order = RowOrder.of([index])
        o = order.row
        block = {
            "embedding": None if embedding is None else embedding.float()[o],
            "label": label[o],
            "index": order.index,
            "split": [split[i] for i in o.tolist()],
            "file_name": [file_name[i] for i in o.tolist()],
        }
        return cls(
            len(order),
            None if embedding is None else int(embedding.shape[1]),
            int(label.shape[1]) if label.dim() == 2 else None,
            [block],
        )


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


def write_neurons(
    run_dir: str | os.PathLike,
    table: pd.DataFrame,
    neurons: list[list[Tensor]],
    summary: dict[str, Any],
    overwrite: bool = False,
) -> list[Path]:
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


def write_ablation(
    out_dir: str | os.PathLike,
    table: pd.DataFrame,
    summary: pd.DataFrame,
    conditions: dict[str, Any],
    figures: dict[str, Any],
    overwrite: bool = False,
    confusion: pd.DataFrame | None = None,
) -> None:
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


def stability_paths(run_dir: str | os.PathLike, sweep: bool = True) -> dict[str, Path]:
    """Where the stability step writes: ``stability`` (and ``threshold_sweep`` when ``sweep``)."""
    d = Path(run_dir)
    paths = {"stability": d / STABILITY_CSV}
    if sweep:
        paths["threshold_sweep"] = d / THRESHOLD_SWEEP_CSV
    return paths


def write_stability(
    run_dir: str | os.PathLike, stability: pd.DataFrame, sweep: pd.DataFrame | None, overwrite: bool = False
) -> dict[str, Path]:
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
        record_move(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- SAE folders and the neurons-vs-features table -------------------------------------------------------
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
