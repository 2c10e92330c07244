"""One tensor written into an ordinary ``torch.save`` file block by block (:class:`TensorFileWriter`), never
holding the whole tensor."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from analysis.runs.atomic import record, sha256_file
from analysis.runs.layout import TEMP_SUFFIX, temp_prefix


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
