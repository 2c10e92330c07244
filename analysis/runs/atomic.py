"""Atomic, no-silent-overwrite writes: the only way aape puts a result on disk.

Every result file is written to a temporary file in the same folder (named by
:func:`analysis.runs.layout.temp_prefix`), flushed to disk and renamed into place, so a crash or a kill
never leaves a half-written result under its final name. Writing over an existing result is an error
unless ``overwrite=True``. :func:`remove_stale_temp` deletes what a killed write left behind.

Inside :func:`recording` every write also records the file's sha256 and size, computed while writing for
tensor files and text (never by re-reading a multi-GB ``features.pt``); :func:`record_move` follows a
folder renamed into place. The pipeline's stage markers keep these records (:mod:`analysis.runs.integrity`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import numpy as np
import soundfile as sf
import torch

from analysis.runs.layout import TEMP_SUFFIX, figure_preview, is_temp_name, temp_prefix

#: Resolution of the PNG previews written beside PDF figures (dots per inch).
PREVIEW_DPI = 100


class OutputExistsError(FileExistsError):
    """Raised when a result already exists and ``overwrite`` is False."""


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Return ``Path(path)``; raise :class:`OutputExistsError` naming it if it exists and not overwrite."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(
            f"{p} already exists; refusing to overwrite it (pass overwrite=true / --force to replace it)"
        )
    return p


def _fsync(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (so a rename never exposes an empty file after a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Open recordings (:func:`recording`): absolute path → (sha256 hex, size in bytes) of each file written.
_RECORDINGS: list[dict[str, tuple[str, int]]] = []


@contextmanager
def recording() -> Iterator[dict[str, tuple[str, int]]]:
    """Collect ``{absolute path: (sha256, size)}`` of every file written (through this module,
    :func:`record` and :func:`record_move`) until the block ends."""
    rec: dict[str, tuple[str, int]] = {}
    _RECORDINGS.append(rec)
    try:
        yield rec
    finally:
        _RECORDINGS.remove(rec)


def record(path: str | os.PathLike, sha256: str, size: int) -> None:
    """Note that ``path`` now holds ``size`` bytes with digest ``sha256`` (no-op outside :func:`recording`)."""
    for rec in _RECORDINGS:
        rec[str(Path(path).absolute())] = (sha256, int(size))


def record_move(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``src`` (a file or folder) was renamed to ``dst``: its records follow it."""
    a, b = str(Path(src).absolute()), str(Path(dst).absolute())
    for rec in _RECORDINGS:
        for k in [k for k in rec if k == a or k.startswith(a + os.sep)]:
            rec[b + k[len(a) :]] = rec.pop(k)


class HashingFile:
    """A binary file object that hashes what passes through :meth:`write` (sequential writers only)."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        self.sha.update(data)
        self.size += memoryview(data).nbytes
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _atomic(path: str | os.PathLike, write: Callable[[str], Optional[str]], overwrite: bool) -> Path:
    """``write(tmp)`` (returning the sha256 of what it wrote when it computed it, else None: the temporary
    file is hashed), flushed and renamed onto ``path``; the digest is :func:`record`-ed."""
    p = check_writable(path, overwrite)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(p.name), suffix=TEMP_SUFFIX, dir=p.parent)
    os.close(fd)
    try:
        digest = write(tmp)
        if not (isinstance(digest, str) and len(digest) == 64):  # writers that compute none return None
            digest = None
        _fsync(tmp)
        size = os.path.getsize(tmp)
        if digest is None and _RECORDINGS:
            digest = sha256_file(tmp)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if digest is not None:
        record(p, digest, size)
    return p


def temp_dir(final: str | os.PathLike) -> Path:
    """A new empty temporary folder next to ``final`` (to be renamed onto it when complete)."""
    p = Path(final)
    p.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(p.name), suffix=TEMP_SUFFIX, dir=p.parent))


def remove_stale_temp(root: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders that killed atomic writes left anywhere under ``root``
    (names of :func:`analysis.runs.layout.is_temp_name`); returns what was removed. Call it only while no
    other process writes under ``root`` (the pipeline holds its lock)."""
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [d for d in dirnames if is_temp_name(d)]:
            shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
            dirnames.remove(name)
            removed.append(Path(dirpath) / name)
        for name in filenames:
            if is_temp_name(name):
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed.append(Path(dirpath) / name)
    return removed


def save_torch(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``torch.save`` atomically (hashed while writing)."""

    def w(tmp: str) -> str:
        with open(tmp, "wb") as f:
            out = HashingFile(f)
            torch.save(obj, out)
        return out.sha.hexdigest()

    return _atomic(path, w, overwrite)


def save_bytes(data: bytes, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``data`` atomically."""

    def w(tmp: str) -> str:
        with open(tmp, "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    return _atomic(path, w, overwrite)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the file ``src`` to ``dst`` atomically (``dst`` never holds part of ``src``)."""

    def w(tmp: str) -> None:
        shutil.copyfile(src, tmp)  # (returns tmp: not a digest)

    return _atomic(dst, w, overwrite)


def save_text(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write UTF-8 text atomically (exactly these characters: no newline translation)."""
    return save_bytes(text.encode("utf-8"), path, overwrite)


def save_json(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write JSON (indent 2, sorted keys kept as given) atomically."""
    return save_text(json.dumps(obj, indent=2, default=str) + "\n", path, overwrite)


def save_csv(df: "Any", path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a pandas DataFrame as CSV (no index) atomically."""
    return _atomic(path, lambda tmp: df.to_csv(tmp, index=False), overwrite)


def save_figure(fig: "Any", path: str | os.PathLike, overwrite: bool = False, **kwargs: Any) -> Path:
    """Save a matplotlib figure (format from the suffix of ``path``) atomically."""
    fmt = Path(path).suffix.lstrip(".") or "pdf"
    return _atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs), overwrite)


def save_pdf(
    fig: "Any",
    path: str | os.PathLike,
    overwrite: bool = False,
    close: bool = True,
    preview: bool = True,
    **kwargs: Any,
) -> Path:
    """Write ``fig`` as a one-page PDF atomically with TrueType text (titles and labels stay searchable)
    and, with ``preview``, the same figure as a PNG beside it (:func:`~analysis.runs.layout.figure_preview`,
    :data:`PREVIEW_DPI`) for web pages; close it unless ``close=False``. Both files are checked before
    either is written."""
    import matplotlib
    import matplotlib.pyplot as plt

    png = figure_preview(path)
    check_writable(path, overwrite)
    if preview:
        check_writable(png, overwrite)
    try:
        with matplotlib.rc_context({"pdf.fonttype": 42}):
            out = save_figure(fig, path, overwrite=overwrite, **kwargs)
        if preview:
            save_figure(fig, png, overwrite=overwrite, dpi=PREVIEW_DPI, **kwargs)
        return out
    finally:
        if close:
            plt.close(fig)


def save_wav(audio: "Any", sample_rate: int, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write mono audio ``[S]`` (float, -1..1; clipped) as a 16-bit PCM WAV atomically."""
    data = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return _atomic(path, lambda tmp: sf.write(tmp, data, int(sample_rate), subtype="PCM_16", format="WAV"), overwrite)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
