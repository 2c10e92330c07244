"""Synthetic EVAR-format tasks: harmonic tones labelled by octave, written from a seed.

``python -m analysis synth --out <root> --task <name> [<name> ...] --seed <int>
[--clips-per-class N] [--duration S] [--overwrite]`` writes

* ``<root>/evar/metadata/<task>.csv`` (``file_name,label,split,f0_hz,midi,level_db``; extra columns
  are ignored by the datamodule),
* ``<root>/evar/metadata/<task>.yaml`` (task definition: ``unit_sec`` = duration, folder),
* ``<root>/work/16k/<task>/<label>/<label>_<k>.wav`` (16 kHz mono PCM_16),

after which ``EVARDataModule(evar_root=root, task=<task>)`` works with no other argument.

Tasks (timbre families; labels ``octave_2`` … ``octave_6``, MIDI octave convention, A4 = 440 Hz, so
octave ``o`` spans MIDI ``12 (o + 1)`` to ``12 (o + 2)``; ``f0`` uniform in log-frequency within it):

* ``synth_octave_sine``: nearly pure tones — harmonic ``k`` at ``k**-a``, ``a`` in [3, 5] (steep roll-off).
* ``synth_octave_saw``: sawtooth-like — all harmonics, ``k**-a`` with ``a`` in [0.8, 1.2].
* ``synth_octave_square``: square-like — odd harmonics only, ``k**-a`` with ``a`` in [0.8, 1.2].

Per clip: random f0 within the octave, random level (peak -20 … -3 dBFS), random harmonic phases, onset
jitter (0 … 15 % of the clip silent at the start), attack 5–30 ms, exponential decay, 10 ms release, and
white noise 30–45 dB below the tone. Harmonics stop below 0.45 × sample rate (no aliasing). Splits per
class: 60 % train, 20 % valid, the rest test (at least one clip each).

Only ``numpy.random.Generator`` seeded from (seed, task) is used — same seed → byte-identical files,
another seed → different files. Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import io as _io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from analysis.runs.atomic import check_writable, save_bytes, save_csv, save_text

from .tasks import sr_dir

__all__ = ["Family", "FAMILIES", "synth_tone", "check_task_args", "write_task"]


@dataclass(frozen=True)
class Family:
    """A timbre family: harmonic amplitudes ``k ** -a`` with ``a`` uniform in ``rolloff``."""

    rolloff: tuple[float, float]
    odd_only: bool = False
    description: str = ""


FAMILIES: dict[str, Family] = {
    "synth_octave_sine": Family((3.0, 5.0), description="nearly pure tones (steep harmonic roll-off)"),
    "synth_octave_saw": Family((0.8, 1.2), description="sawtooth-like (all harmonics, ~1/k)"),
    "synth_octave_square": Family((0.8, 1.2), odd_only=True, description="square-like (odd harmonics, ~1/k)"),
}

DEFAULT_OCTAVES = (2, 3, 4, 5, 6)


def _midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def synth_tone(
    rng: np.random.Generator, f0: float, family: Family, n: int, sample_rate: int
) -> tuple[np.ndarray, float]:
    """One clip ``[n]`` float64 in [-1, 1] and its peak level (dBFS); all randomness from ``rng``."""
    t = np.arange(n) / sample_rate
    rolloff = rng.uniform(*family.rolloff)
    k_max = max(1, int(0.45 * sample_rate // f0))
    ks = np.arange(1, k_max + 1)
    if family.odd_only:
        ks = ks[ks % 2 == 1]
    amps = ks.astype(np.float64) ** -rolloff
    phases = rng.uniform(0.0, 2 * np.pi, size=len(ks))
    audible = amps >= 1e-4  # harmonics below -80 dB of the fundamental are skipped (speed)
    ks, amps, phases = ks[audible], amps[audible], phases[audible]
    tone = amps @ np.sin(2 * np.pi * f0 * ks[:, None] * t[None, :] + phases[:, None])
    # envelope: onset jitter, attack, exponential decay, short release at the end
    onset = int(rng.uniform(0.0, 0.15) * n)
    attack = max(1, int(rng.uniform(0.005, 0.030) * sample_rate))
    decay_tau = rng.uniform(0.3, 2.0)  # seconds
    env = np.zeros(n)
    m = n - onset
    tt = np.arange(m) / sample_rate
    env[onset:] = np.minimum(1.0, (np.arange(m) + 1) / attack) * np.exp(-tt / decay_tau)
    release = min(m, max(1, int(0.010 * sample_rate)))
    env[n - release :] *= np.linspace(1.0, 0.0, release)
    x = tone * env
    x /= max(np.abs(x).max(), 1e-12)
    snr_db = rng.uniform(30.0, 45.0)
    rms = np.sqrt(np.mean(x[onset:] ** 2)) if m > 0 else 1.0
    x = x + rng.standard_normal(n) * rms * 10 ** (-snr_db / 20)
    level_db = rng.uniform(-20.0, -3.0)
    x *= 10 ** (level_db / 20) / max(np.abs(x).max(), 1e-12)
    return x, level_db


def _split_counts(n: int) -> tuple[int, int, int]:
    n_valid = max(1, int(round(0.2 * n)))
    n_test = max(1, int(round(0.2 * n)))
    return n - n_valid - n_test, n_valid, n_test


def _atomic_wav(path: Path, data: np.ndarray, sample_rate: int, overwrite: bool) -> None:
    buf = _io.BytesIO()
    sf.write(buf, data, sample_rate, subtype="PCM_16", format="WAV")
    save_bytes(buf.getvalue(), path, overwrite)


def check_task_args(
    task: str, clips_per_class: int, duration: float, octaves: Sequence[int], sample_rate: int
) -> list[int]:
    """Raise ``ValueError`` naming the argument unless :func:`write_task` can write this task; returns
    the octaves as ints."""
    if task not in FAMILIES:
        raise ValueError(f"Unknown synthetic task {task!r}; available: {sorted(FAMILIES)}")
    if clips_per_class < 3:
        raise ValueError(f"clips_per_class must be >= 3 (train/valid/test each need a clip), got {clips_per_class}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    octaves = [int(o) for o in octaves]
    if len(set(octaves)) < 2 or any(not -1 <= o <= 9 for o in octaves):
        raise ValueError(f"octaves must be >= 2 distinct values in -1..9, got {octaves}")
    sr_dir(sample_rate)
    return octaves


def write_task(
    root: Union[str, os.PathLike],
    task: str,
    seed: int,
    clips_per_class: int = 12,
    duration: float = 1.0,
    octaves: Sequence[int] = DEFAULT_OCTAVES,
    sample_rate: int = 16000,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic EVAR-format task under ``root`` (module docstring); returns the CSV path.

    Args:
        root: EVAR root to write into.
        task: a key of :data:`FAMILIES`.
        seed: random seed (same seed → byte-identical files).
        clips_per_class: clips per octave (>= 3: every split gets at least one).
        duration: clip length in seconds (also the task's ``unit_sec``).
        octaves: octave numbers used as classes (>= 2 distinct).
        sample_rate: sample rate of the files (folder ``work/<sr_dir>/``).
        overwrite: replace existing files (otherwise an existing CSV/YAML/wav is an error).
    """
    octaves = check_task_args(task, clips_per_class, duration, octaves, sample_rate)
    root = Path(root)
    family = FAMILIES[task]
    n = int(round(sample_rate * duration))
    meta_dir = root / "evar" / "metadata"
    csv_path, yaml_path = meta_dir / f"{task}.csv", meta_dir / f"{task}.yaml"
    check_writable(csv_path, overwrite)
    check_writable(yaml_path, overwrite)
    audio_dir = root / "work" / sr_dir(sample_rate) / task
    task_id = zlib.crc32(task.encode("utf-8"))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, task_id]))
    n_train, n_valid, n_test = _split_counts(clips_per_class)
    rows = []
    for o in octaves:
        label = f"octave_{o}"
        splits = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
        for k, split in enumerate(splits):
            midi = rng.uniform(12 * (o + 1), 12 * (o + 2))
            f0 = _midi_to_hz(midi)
            x, level_db = synth_tone(rng, f0, family, n, sample_rate)
            file_name = f"{label}/{label}_{k:03d}.wav"
            _atomic_wav(audio_dir / file_name, x, sample_rate, overwrite)
            rows.append(
                {
                    "file_name": file_name,
                    "label": label,
                    "split": split,
                    "f0_hz": round(f0, 4),
                    "midi": round(midi, 4),
                    "level_db": round(level_db, 3),
                }
            )
    spec = {
        "name": task,
        "unit_sec": float(duration),
        "folds": 0,
        "folder": task,
        "multilabel": False,
        "description": f"synthetic harmonic tones labelled by octave: {family.description} (seed {seed})",
    }
    save_csv(pd.DataFrame(rows), csv_path, overwrite=overwrite)
    save_text(yaml.safe_dump(spec, sort_keys=False), yaml_path, overwrite=overwrite)
    return csv_path
