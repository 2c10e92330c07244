"""Atomic, no-silent-overwrite writes: the only way aape puts a result on disk.

Every result file is written to a temporary file in the same folder and renamed into place, so a crash
never leaves a half-written result. Writing over an existing result is an error unless
``overwrite=True``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf
import torch

from analysis.runs.layout import figure_preview

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


def _atomic(path: str | os.PathLike, write: Callable[[str], None], overwrite: bool) -> Path:
    p = check_writable(path, overwrite)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def save_torch(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``torch.save`` atomically."""
    return _atomic(path, lambda tmp: torch.save(obj, tmp), overwrite)


def save_text(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write UTF-8 text atomically."""

    def w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return _atomic(path, w, overwrite)


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


def save_pdf(fig: "Any", path: str | os.PathLike, overwrite: bool = False, close: bool = True,
             preview: bool = True, **kwargs: Any) -> Path:
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
    return _atomic(path, lambda tmp: sf.write(tmp, data, int(sample_rate), subtype="PCM_16", format="WAV"),
                   overwrite)


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
