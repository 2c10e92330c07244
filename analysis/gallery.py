"""The listening gallery's arithmetic: which neurons to show, where in a clip a neuron fires, which part of
the clip to play. Tensors and plain values in and out (no files, no model).

* :func:`parse_neuron` — ``"3:17"`` → ``(3, 17)``.
* :func:`top_clips_of` — the filled top-K slots of one neuron in a ``top_clips.pt`` dict.
* :func:`activation_grid` — one neuron's activations over the positions of one clip → a map
  ``[bands, columns]`` over (frequency band, time column of ``frames_per_position`` front-end frames).
* :func:`grid_time_extent`, :func:`peak_seconds`, :func:`excerpt_bounds` — front-end frames → seconds.
* :func:`label_purity` — share of a neuron's top clips that carry one of its classes.

Times: a front-end frame ``f`` is centred at ``f * frame_seconds`` (centred STFT frames, CREPE frames centred
on ``f * hop``), so a position spanning frames ``[f, f + frames_per_position)`` covers
``[(f - 0.5) * frame_seconds, (f + frames_per_position - 0.5) * frame_seconds)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

_NEURON = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_neuron(spec: str) -> tuple[int, int]:
    """``"layer:index"`` → ``(layer, index)`` (0-based site index and neuron index).

    >>> parse_neuron("3:17")
    (3, 17)
    >>> parse_neuron("3-17")
    Traceback (most recent call last):
    ...
    ValueError: neuron '3-17' is not of the form layer:index (e.g. 3:17)
    """
    m = _NEURON.match(spec)
    if not m:
        raise ValueError(f"neuron {spec!r} is not of the form layer:index (e.g. 3:17)")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class TopClip:
    """One filled slot of a neuron's top-K list: ``rank`` (0 = highest score), ``score`` (the clip's mean
    activation), dataset ``index``, peak ``frame`` (-1 unknown) and ``band`` (-1 none)."""

    rank: int
    score: float
    index: int
    frame: int
    band: int


def top_clips_of(top: dict[str, Any], layer: int, neuron: int, limit: Optional[int] = None) -> list[TopClip]:
    """The filled slots (``index >= 0``) of neuron ``(layer, neuron)`` in a ``top_clips.pt`` dict, best first,
    at most ``limit``.

    >>> t = {"score": torch.tensor([[[2.0, 1.0, -math.inf]]]), "index": torch.tensor([[[7, 3, -1]]]),
    ...      "frame": torch.tensor([[[4, 0, -1]]]), "band": torch.tensor([[[-1, -1, -1]]])}
    >>> [(c.rank, c.index, c.frame) for c in top_clips_of(t, 0, 0)]
    [(0, 7, 4), (1, 3, 0)]
    """
    score, index = top["score"][layer, neuron], top["index"][layer, neuron]
    frame, band = top["frame"][layer, neuron], top["band"][layer, neuron]
    out = []
    for r in range(score.shape[0]):
        if int(index[r]) < 0:
            continue
        out.append(
            TopClip(rank=len(out), score=float(score[r]), index=int(index[r]), frame=int(frame[r]), band=int(band[r]))
        )
        if limit is not None and len(out) >= limit:
            break
    return out


@dataclass
class ActivationGrid:
    """One neuron on one clip: ``grid`` float ``[bands, columns]`` (mean activation of the positions in each
    cell; NaN where no counted position lies; one row when the site has no frequency axis), column ``c``
    covering front-end frames ``[c * frames_per_position, (c + 1) * frames_per_position)``; ``score`` the mean
    over every counted position (CLS included when counted: the statistics pass's clip score);
    ``peak_frame`` / ``peak_band`` the counted position with the largest activation (-1 unknown / none)."""

    grid: Tensor
    score: float
    peak_frame: int
    peak_band: int


def activation_grid(
    values: Tensor,
    frame: Tensor,
    counted: Tensor,
    band: Optional[Tensor] = None,
    n_bands: int = 0,
    frames_per_position: int = 1,
) -> ActivationGrid:
    """Map one neuron's activations on one clip over (band, time column).

    Args:
        values: float ``[Q]`` activations at the clip's positions (all site calls of the clip, flattened).
        frame: long ``[Q]`` first front-end frame of each position (-1 for positions without a place in time,
            e.g. CLS).
        counted: bool ``[Q]`` positions the statistics count (padding excluded).
        band: long ``[Q]`` frequency band of each position (-1 none) or None (no frequency axis).
        n_bands: bands of the site (rows of the grid; 0 → one row).
        frames_per_position: front-end frames per time column.

    >>> g = activation_grid(torch.tensor([9., 1., 2., 3., 5.]), torch.tensor([-1, 0, 16, 0, 16]),
    ...                     torch.ones(5, dtype=torch.bool), torch.tensor([-1, 0, 0, 1, 1]), 2, 16)
    >>> g.grid.tolist(), g.score, g.peak_frame, g.peak_band
    ([[1.0, 2.0], [3.0, 5.0]], 4.0, 16, 1)
    >>> activation_grid(torch.tensor([1., 3., 2.]), torch.tensor([0, 0, 2]), torch.ones(3, dtype=torch.bool)).grid
    tensor([[2., nan, 2.]])
    """
    values, frame, counted = values.float().reshape(-1), frame.long().reshape(-1), counted.bool().reshape(-1)
    if not (values.shape == frame.shape == counted.shape):
        raise ValueError(
            f"values {tuple(values.shape)}, frame {tuple(frame.shape)} and counted "
            f"{tuple(counted.shape)} must have one entry per position"
        )
    if frames_per_position < 1:
        raise ValueError(f"frames_per_position must be >= 1, got {frames_per_position}")
    rows = max(int(n_bands), 1)
    if band is None or n_bands <= 0:
        band = torch.zeros_like(frame)
    band = band.long().reshape(-1)
    score = float(values[counted].mean()) if bool(counted.any()) else math.nan
    placed = counted & (frame >= 0) & ((band >= 0) if n_bands > 0 else torch.ones_like(counted))
    if not bool(placed.any()):
        return ActivationGrid(torch.full((rows, 0), math.nan), score, -1, -1)
    col = frame[placed] // frames_per_position
    row = band[placed].clamp(max=rows - 1)
    cols = int(col.max()) + 1
    cell = row * cols + col
    total = torch.zeros(rows * cols, dtype=torch.float64).index_add_(0, cell, values[placed].double())
    n = torch.zeros(rows * cols, dtype=torch.float64).index_add_(0, cell, torch.ones_like(total[cell]))
    grid = (total / n).float().reshape(rows, cols)  # 0/0 → NaN where no position lies
    best = int(torch.argmax(values[placed]))
    peak_band = int(band[placed][best]) if n_bands > 0 else -1
    return ActivationGrid(grid, score, int(frame[placed][best]), peak_band)


def grid_time_extent(columns: int, frame_seconds: float, frames_per_position: int = 1) -> tuple[float, float]:
    """Seconds ``(start, stop)`` covered by ``columns`` time columns (see the module docstring).

    >>> grid_time_extent(11, 0.1)
    (-0.05, 1.05)
    """
    return (-0.5 * frame_seconds, (columns * frames_per_position - 0.5) * frame_seconds)


def peak_seconds(frame: int, frame_seconds: float, frames_per_position: int = 1) -> float:
    """Centre (seconds) of the position starting at front-end ``frame`` and spanning ``frames_per_position``
    frames.

    >>> peak_seconds(16, 0.01, 16)
    0.235
    """
    return round((frame + (frames_per_position - 1) / 2) * frame_seconds, 9)


def excerpt_bounds(peak: Optional[float], duration: float, length: float) -> tuple[float, float]:
    """Seconds ``(start, stop)`` of an excerpt of ``length`` seconds centred on ``peak`` and kept inside
    ``[0, duration]``; the whole clip when it is not longer than ``length`` (or when ``peak`` is unknown,
    its first ``length`` seconds).

    >>> excerpt_bounds(5.0, 10.0, 4.0), excerpt_bounds(0.5, 10.0, 4.0), excerpt_bounds(9.9, 10.0, 4.0)
    ((3.0, 7.0), (0.0, 4.0), (6.0, 10.0))
    >>> excerpt_bounds(0.3, 1.0, 4.0), excerpt_bounds(None, 10.0, 4.0)
    ((0.0, 1.0), (0.0, 4.0))
    """
    if length <= 0:
        raise ValueError(f"excerpt length must be > 0 seconds, got {length}")
    if duration <= length:
        return 0.0, float(duration)
    if peak is None:
        return 0.0, float(length)
    start = min(max(peak - length / 2, 0.0), duration - length)
    return float(start), float(start + length)


def label_purity(labels: Sequence[str], classes: Sequence[str]) -> float:
    """Share of clips whose label (``','``-joined for multi-label clips) includes one of ``classes``; NaN
    without clips or classes.

    >>> label_purity(["octave_5", "octave_5", "octave_4", "a,octave_5"], ["octave_5"])
    0.75
    """
    if not labels or not classes:
        return math.nan
    want = set(classes)
    return sum(1 for lab in labels if want & {s.strip() for s in str(lab).split(",")}) / len(labels)
