"""Parametric stimulus sets for tuning curves, written as EVAR-format tasks from a seed.

A stimulus set is a task whose classes are the values of ONE parameter and whose clips vary everything
else at random (:mod:`datamodules.stimulus_sounds`), so the ordinary statistics pass
(:class:`callbacks.ActivationStatsCallback`) counts P(active | value) for every unit. ``write_stimuli``
writes, like :func:`datamodules.synthetic.write_task`,

* ``<root>/evar/metadata/tuning_<dimension>.csv`` (``file_name,label,split,value``),
* ``<root>/evar/metadata/tuning_<dimension>.yaml`` (task definition: ``unit_sec``, folder),
* ``<root>/work/<sr>/tuning_<dimension>/<label>/<label>_<k>.wav`` (mono PCM_16),

after which ``EVARDataModule(evar_root=root, task="tuning_<dimension>")`` reads it. Every clip is in the
``train`` split (the class list of a task comes from its train split; stimuli are never probed).
Class labels are ``<dimension>_<value>`` (:func:`value_label`, read back by :func:`label_value`).

Dimensions (:data:`DIMENSIONS`): ``pitch`` (MIDI note), ``loudness`` (RMS dBFS), ``centroid`` (spectral
centroid, Hz), ``noise_bandwidth`` (octaves), ``onset_rate`` (onsets per second), ``inharmonicity``
(partial jitter, 0 = harmonic), ``instrument`` (General MIDI program at MIDI 60; categorical). ``source``
``tone`` (synthesised harmonic tone), ``sine`` (pure tone) or ``soundfont``
(:func:`datamodules.note_render.render_note`) applies to pitch and loudness. Only a
``numpy.random.Generator`` seeded from (seed, dimension) is used: the same seed gives byte-identical files.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import yaml

from analysis.runs.atomic import check_writable, save_csv, save_text

from . import stimulus_sounds as snd
from .synthetic import _atomic_wav
from .tasks import sr_dir

__all__ = [
    "Dimension",
    "DIMENSIONS",
    "stimulus_task",
    "value_label",
    "label_value",
    "check_stimuli_args",
    "write_stimuli",
]


@dataclass(frozen=True)
class Dimension:
    """One stimulus dimension: the sound of a value, its default values, unit and whether it is ordered."""

    sound: Callable[..., np.ndarray]
    values: tuple[float, ...]
    unit: str
    categorical: bool = False


DIMENSIONS: dict[str, Dimension] = {
    "pitch": Dimension(snd.pitch, tuple(float(m) for m in range(24, 97, 2)), "MIDI note"),
    "loudness": Dimension(snd.loudness, tuple(float(v) for v in range(-60, -4, 5)), "dBFS RMS"),
    "centroid": Dimension(snd.centroid, (250.0, 354.0, 500.0, 707.0, 1000.0, 1414.0, 2000.0, 2828.0, 4000.0), "Hz"),
    "noise_bandwidth": Dimension(snd.noise_bandwidth, (0.125, 0.25, 0.5, 1.0, 2.0, 4.0), "octaves"),
    "onset_rate": Dimension(snd.onset_rate, (1.0, 2.0, 4.0, 8.0, 16.0), "onsets/s"),
    "inharmonicity": Dimension(snd.inharmonicity, (0.0, 0.02, 0.05, 0.1, 0.2, 0.4), "partial jitter"),
    "instrument": Dimension(
        snd.instrument, (0.0, 11.0, 24.0, 40.0, 56.0, 71.0, 73.0, 80.0), "GM program", categorical=True
    ),
}


def stimulus_task(dimension: str) -> str:
    """The EVAR task name of a stimulus set: ``tuning_<dimension>``."""
    return f"tuning_{dimension}"


def value_label(dimension: str, value: float) -> str:
    """Class label of a value (shortest exact form).

    >>> value_label("pitch", 60.0), value_label("loudness", -30.0), value_label("noise_bandwidth", 0.25)
    ('pitch_60', 'loudness_-30', 'noise_bandwidth_0.25')
    """
    return f"{dimension}_{float(value):g}"


def label_value(dimension: str, label: str) -> float:
    """The value of a class label of ``dimension`` (inverse of :func:`value_label`).

    >>> label_value("noise_bandwidth", "noise_bandwidth_0.25")
    0.25
    """
    prefix = f"{dimension}_"
    if not label.startswith(prefix):
        raise ValueError(f"class {label!r} is not a value of dimension {dimension!r} (expected '{prefix}<value>')")
    try:
        return float(label[len(prefix) :])
    except ValueError:
        raise ValueError(f"class {label!r}: '{label[len(prefix) :]}' is not a number") from None


def check_stimuli_args(
    dimension: str,
    values: Optional[Sequence[float]],
    clips_per_value: int,
    duration: float,
    source: str,
    sample_rate: int,
) -> list[float]:
    """Raise ``ValueError`` naming the argument unless :func:`write_stimuli` can write this set; returns
    the values (the dimension's defaults when None)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"Unknown stimulus dimension {dimension!r}; available: {sorted(DIMENSIONS)}")
    if source not in snd.SOURCES:
        raise ValueError(f"source must be one of {snd.SOURCES}, got {source!r}")
    if clips_per_value < 1:
        raise ValueError(f"clips_per_value must be >= 1, got {clips_per_value}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    vals = [float(v) for v in (DIMENSIONS[dimension].values if values is None else values)]
    labels = [value_label(dimension, v) for v in vals]
    if len(vals) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"{dimension}: values must be >= 2 distinct numbers, got {vals}")
    sr_dir(sample_rate)
    return vals


def write_stimuli(
    root: Union[str, os.PathLike],
    dimension: str,
    seed: int,
    values: Optional[Sequence[float]] = None,
    clips_per_value: int = 4,
    duration: float = 1.0,
    source: str = "tone",
    sample_rate: int = 16000,
    overwrite: bool = False,
) -> Path:
    """Write the stimulus set of ``dimension`` under ``root`` (module docstring); returns the CSV path.

    Args:
        root: EVAR root to write into.
        dimension: a key of :data:`DIMENSIONS`.
        seed: random seed (same seed → byte-identical files).
        values: the parameter values (classes); default the dimension's.
        clips_per_value: clips per value, each with fresh random nuisance parameters.
        duration: clip length in seconds (the task's ``unit_sec``).
        source: ``tone``, ``sine`` or ``soundfont`` (pitch and loudness; instrument always uses the SoundFont).
        sample_rate: sample rate of the files (folder ``work/<sr_dir>/``).
        overwrite: replace existing files (otherwise an existing CSV/YAML/wav is an error).
    """
    vals = check_stimuli_args(dimension, values, clips_per_value, duration, source, sample_rate)
    task, dim = stimulus_task(dimension), DIMENSIONS[dimension]
    meta = Path(root) / "evar" / "metadata"
    csv_path, yaml_path = meta / f"{task}.csv", meta / f"{task}.yaml"
    check_writable(csv_path, overwrite)
    check_writable(yaml_path, overwrite)
    audio_dir = Path(root) / "work" / sr_dir(sample_rate) / task
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(task.encode())]))
    n = int(round(sample_rate * duration))
    rows = []
    for v in vals:
        label = value_label(dimension, v)
        for k in range(clips_per_value):
            x = dim.sound(rng, v, n, sample_rate, source)
            file_name = f"{label}/{label}_{k:03d}.wav"
            _atomic_wav(audio_dir / file_name, x, sample_rate, overwrite)
            rows.append({"file_name": file_name, "label": label, "split": "train", "value": v})
    spec = {
        "name": task,
        "unit_sec": float(duration),
        "folds": 0,
        "folder": task,
        "multilabel": False,
        "description": f"tuning stimuli: {dimension} ({dim.unit}; source {source}), seed {seed}",
    }
    save_csv(pd.DataFrame(rows), csv_path, overwrite=overwrite)
    save_text(yaml.safe_dump(spec, sort_keys=False), yaml_path, overwrite=overwrite)
    return csv_path
