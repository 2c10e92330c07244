"""Listening to a neuron in a notebook: its top clips read from the run's data exactly as the statistics pass
saw them (head crop), cut to an excerpt around the neuron's peak, as HTML audio players (the ``<audio>``
elements IPython's ``Audio`` display writes) that Jupyter shows when the object is a cell's value."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd
import soundfile as sf

from analysis.app.gallery_pass import Clips, run_datamodule  # the gallery's own reading of the run's clips
from analysis.app.notebook.folders import RunFolders
from analysis.app.specs import run_sources
from analysis.gallery import excerpt_bounds
from analysis.runs.read import read_manifest


@dataclass
class Clip:
    """One top clip: ``audio`` float32 ``[samples]`` of the excerpt ``[start, stop)`` seconds, its row of
    ``top_clips()``."""

    audio: np.ndarray
    sample_rate: int
    start: float
    stop: float
    row: dict[str, Any]


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of ``audio`` (float ``[samples]`` in [-1, 1], clipped)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def player_html(audio: np.ndarray, sample_rate: int) -> str:
    """An ``<audio controls>`` element with the WAV inline (base64)."""
    data = base64.b64encode(wav_bytes(audio, sample_rate)).decode("ascii")
    return f'<audio controls preload="none"><source src="data:audio/wav;base64,{data}" type="audio/wav"></audio>'


@dataclass
class Listening:
    """The top clips of one unit, shown in Jupyter as a table with a player per clip."""

    title: str
    clips: list[Clip] = field(default_factory=list)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{c.row['rank']}</td><td>{html.escape(str(c.row['label']))}</td>"
            f"<td>{html.escape(str(c.row['file_name']))}</td><td>{c.row['score']:.3g}</td>"
            f"<td>{c.start:.2f}–{c.stop:.2f} s</td><td>{player_html(c.audio, c.sample_rate)}</td></tr>"
            for c in self.clips
        )
        return (
            f"<p><b>{html.escape(self.title)}</b></p><table><tr><th>rank</th><th>label</th><th>file</th>"
            f"<th>score</th><th>excerpt</th><th></th></tr>{rows}</table>"
        )

    def __repr__(self) -> str:
        return f"Listening({self.title!r}, {len(self.clips)} clips)"


def read_clips(
    folders: RunFolders, top: pd.DataFrame, evar_root: Optional[str], excerpt_seconds: Optional[float] = 4.0
) -> list[Clip]:
    """The clips of ``top`` (rows of ``top_clips()``) from the run's data (``evar_root``: read the audio
    there instead of the EVAR root the manifest records); ``excerpt_seconds`` around each peak (None: the
    whole clip)."""
    if top.empty:
        return []
    _, data = run_sources(read_manifest(folders.run), folders.run)
    source = Clips(run_datamodule(data, evar_root))
    sr = int(data.get("sample_rate") or 16000)
    out = []
    for row in top.to_dict("records"):
        item = source.get(int(row["index"]))
        audio = item["audio"][: int(item["length"])].numpy()
        duration = len(audio) / sr
        peak = None if pd.isna(row["peak_seconds"]) else float(row["peak_seconds"])
        start, stop = (0.0, duration) if excerpt_seconds is None else excerpt_bounds(peak, duration, excerpt_seconds)
        out.append(Clip(audio[round(start * sr) : round(stop * sr)], sr, start, stop, row))
    return out
