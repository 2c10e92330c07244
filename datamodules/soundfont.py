"""NSynth-like EVAR tasks rendered from a General MIDI SoundFont (``.sf2``), written from a seed.

``python -m analysis soundfont --out <root> --kind family octave [--sf2 FILE.sf2] --seed <int> ...``
writes, for each task ``<prefix>_<kind>`` (default prefix ``gm``),

* ``<root>/evar/metadata/<task>.csv`` (``file_name,label,split,family,program,preset,midi,octave,
  pitch_class,velocity,peak_db``; the datamodule reads the first three),
* ``<root>/evar/metadata/<task>.yaml`` (task definition: ``unit_sec`` = duration, folder),
* ``<root>/work/16k/<task>/<label>/<label>_<k>.wav`` (mono PCM_16 at ``sample_rate``),

after which ``EVARDataModule(evar_root=root, task=<task>)`` works with no other argument.

Kinds (a task's kind is the end of its name, :func:`task_kind`):

* ``family``: one class per instrument family (:mod:`datamodules.gm_families`; NSynth's families from GM
  program ranges); a clip is a note of a program of that family, on a note of the family's range;
* ``octave``: classes ``octave_<o>`` (the study's octave, ``midi // 12 - 1``); a clip is a note of
  the octave played by a family whose range covers it;
* ``pitch_class``: classes C … B; a clip is a note of that pitch class on any family's range.

Each clip: the family (octave / pitch-class tasks: uniform among the families that can play the class),
then a program of the family that the SoundFont has in bank 0, a note and a velocity (uniform in
``velocity``) are drawn from ``numpy.random.Generator`` seeded by (seed, task name). The note is held for
``hold`` of the clip and released; the release tail is rendered until the clip ends. Every clip is
rendered alone: before each note the synthesizer is reset (channels reset, voices faded out) and run
until its output is exactly zero (:meth:`SoundFont.silence`), so nothing of a clip sounds in the next. Stereo output is mixed to mono (mean of left and right) at
``sample_rate`` (TinySoundFont resamples the SoundFont's samples). A draw that renders silence (a preset
without a sample for that key) is redrawn. Same seed and SoundFont → byte-identical files. Files are
written atomically; existing ones are refused unless ``overwrite``.

The default SoundFont is ``TimGM6mb.sf2`` shipped inside the ``pretty_midi`` wheel (GPL-2; located with
:func:`importlib.util.find_spec`, never copied); any GM ``.sf2`` works by path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io as _io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import soundfile as sf
import yaml
from tinysoundfont import _tinysoundfont as tsf

from analysis.runs.atomic import check_writable, save_bytes, save_csv, save_text

from .gm_families import PITCH_CLASSES, family_programs, note_ranges, octave_label, octave_notes, pitch_class_label
from .tasks import sr_dir

__all__ = [
    "KINDS",
    "SoundFontError",
    "Note",
    "default_soundfont",
    "SoundFont",
    "task_kind",
    "check_soundfont_args",
    "class_choices",
    "draw_note",
    "render_audible",
    "write_soundfont_task",
]

KINDS = ("family", "octave", "pitch_class")
Kind = Literal["family", "octave", "pitch_class"]
DEFAULT_OCTAVES = (2, 3, 4, 5, 6)
SILENCE = 1e-4  # a render whose peak stays below this is silence
MAX_REDRAWS = 20
INSTALL_HINT = "pip install pretty_midi==0.2.11.post0"


class SoundFontError(ValueError):
    """A SoundFont that cannot give the task; the message names the file and the problem."""


@dataclass(frozen=True)
class Note:
    """One clip to render: ``preset`` index in the SoundFont, MIDI ``midi`` note, ``velocity`` 1-127."""

    label: str
    family: str
    program: int
    preset: int
    midi: int
    velocity: int


def default_soundfont() -> Path:
    """``pretty_midi/TimGM6mb.sf2`` of the installed ``pretty_midi`` wheel (never imported)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default SoundFont TimGM6mb.sf2 comes with pretty_midi; install it with "
            f"`{INSTALL_HINT}` (make install does) or give a .sf2 file by path"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall pretty_midi (`{INSTALL_HINT}`)")
    return path


def file_sha256(path: Union[str, os.PathLike]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class SoundFont:
    """A loaded ``.sf2`` rendering one isolated note at a time (mono float32)."""

    def __init__(
        self, path: Union[str, os.PathLike, None] = None, sample_rate: int = 16000, gain_db: float = 0.0
    ) -> None:
        self.path = Path(path) if path is not None else default_soundfont()
        if not self.path.is_file():
            raise FileNotFoundError(f"SoundFont not found: {self.path}")
        data = self.path.read_bytes()
        if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise SoundFontError(
                f"{self.path}: not a SoundFont 2 file (expected a RIFF 'sfbk' header, got {data[:12]!r})"
            )
        try:
            self._sf = tsf.SoundFont(data)
        except RuntimeError as e:
            raise SoundFontError(f"{self.path}: the SoundFont cannot be read ({e}): truncated or corrupt") from None
        if self._sf.get_preset_count() == 0:
            raise SoundFontError(f"{self.path}: the SoundFont has no presets")
        self.sample_rate = int(sample_rate)
        self._sf.set_output(tsf.OutputMode.StereoInterleaved, self.sample_rate, float(gain_db))

    def preset(self, program: int) -> int:
        """Preset index of GM ``program`` in bank 0, or -1 when the SoundFont lacks it."""
        return int(self._sf.get_preset_index(0, int(program)))

    def preset_name(self, index: int) -> str:
        return str(self._sf.get_preset_name(int(index)))

    def render(self, preset: int, midi: int, velocity: int, n: int, hold: int) -> np.ndarray:
        """The note alone: reset, key down for ``hold`` samples, key up, release until ``n`` samples.
        Returns mono ``[n]`` float32 (mean of the stereo channels)."""
        buf = bytearray(n * 2 * 4)
        view = memoryview(buf)
        hold = max(0, min(int(hold), n))
        self.silence()
        try:
            self._sf.note_on(int(preset), int(midi), float(velocity) / 127.0)
            self._sf.render(view[: hold * 8])
            self._sf.note_off(int(preset), int(midi))
            self._sf.render(view[hold * 8 :])
        finally:
            self.silence()
        return np.frombuffer(buf, dtype=np.float32).reshape(n, 2).mean(axis=1)

    def silence(self, chunk: int = 256, max_chunks: int = 4000) -> None:
        """Stop every voice: TinySoundFont's reset fades sounding voices out over a few milliseconds, so
        render (and discard) until the output is exactly zero; after this nothing of earlier notes sounds."""
        self._sf.reset()
        scratch = bytearray(chunk * 2 * 4)
        for _ in range(max_chunks):
            self._sf.render(memoryview(scratch))
            if not any(scratch):
                return
        raise SoundFontError(f"{self.path}: voices still sound {max_chunks * chunk} samples after a reset")


def task_kind(task: str) -> Kind:
    """The kind of a SoundFont task from the end of its name.

    >>> task_kind("gm_family"), task_kind("my_sf_pitch_class"), task_kind("octave")
    ('family', 'pitch_class', 'octave')
    """
    for kind in sorted(KINDS, key=len, reverse=True):
        if task == kind or task.endswith("_" + kind):
            return kind  # type: ignore[return-value]
    raise ValueError(
        f"SoundFont task {task!r}: the name must end with one of {list(KINDS)} "
        f"(e.g. gm_family), which says what the classes are"
    )


def split_counts(n: int, splits: Sequence[float]) -> tuple[int, int, int]:
    """Train/valid/test clips of a class of ``n``: valid and test rounded from their ratios (>= 1 each).

    >>> split_counts(10, (0.6, 0.2, 0.2)), split_counts(3, (0.8, 0.1, 0.1))
    ((6, 2, 2), (1, 1, 1))
    """
    total = float(sum(splits))
    n_valid = max(1, int(round(splits[1] / total * n)))
    n_test = max(1, int(round(splits[2] / total * n)))
    return n - n_valid - n_test, n_valid, n_test


def check_soundfont_args(
    task: str,
    clips_per_class: int = 20,
    duration: float = 1.0,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    velocity: Sequence[int] = (60, 110),
    hold: float = 0.75,
    octaves: Sequence[int] = DEFAULT_OCTAVES,
    families: Optional[Sequence[str]] = None,
    note_ranges_: Optional[Mapping[str, Sequence[int]]] = None,
    sample_rate: int = 16000,
) -> Kind:
    """Raise ``ValueError`` naming the argument unless these arguments can make a task; returns its kind."""
    kind = task_kind(task)
    if len(splits) != 3 or any(s < 0 for s in splits) or splits[0] <= 0:
        raise ValueError(f"splits must be three ratios train, valid, test (train > 0), got {list(splits)}")
    if clips_per_class < 3 or split_counts(clips_per_class, splits)[0] < 1:
        raise ValueError(f"clips_per_class must be >= 3 and leave a train clip after valid/test, got {clips_per_class}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    if not 0 < hold <= 1:
        raise ValueError(f"hold must be in (0, 1] (share of the clip the key is held), got {hold}")
    if len(velocity) != 2 or not 1 <= velocity[0] <= velocity[1] <= 127:
        raise ValueError(f"velocity must be [low, high] with 1 <= low <= high <= 127, got {list(velocity)}")
    fams = family_programs(families)
    ranges = note_ranges(list(fams), note_ranges_)
    if kind == "family" and len(fams) < 2:
        raise ValueError(f"families: a family task needs >= 2 families, got {list(fams)}")
    if kind == "octave":
        if len(set(octaves)) < 2 or len(set(octaves)) != len(octaves):
            raise ValueError(f"octaves must be >= 2 distinct octaves, got {list(octaves)}")
        for o in octaves:
            if not any(lo <= m <= hi for lo, hi in ranges.values() for m in octave_notes(int(o))):
                raise ValueError(f"octaves: no family of {list(fams)} can play octave {o} (note ranges {ranges})")
    sr_dir(sample_rate)
    return kind


def _class_options(
    kind: Kind, ranges: dict[str, tuple[int, int]], octaves: Sequence[int]
) -> dict[str, dict[str, list[int]]]:
    """class label → family → the notes that family can play for that class."""
    if kind == "family":
        return {f: {f: list(range(lo, hi + 1))} for f, (lo, hi) in ranges.items()}
    if kind == "octave":
        return {
            octave_label(octave_notes(int(o))[0]): {
                f: [m for m in octave_notes(int(o)) if lo <= m <= hi] for f, (lo, hi) in ranges.items()
            }
            for o in octaves
        }
    return {
        pc: {f: [m for m in range(lo, hi + 1) if m % 12 == i] for f, (lo, hi) in ranges.items()}
        for i, pc in enumerate(PITCH_CLASSES)
    }


def class_choices(
    font: SoundFont,
    kind: Kind,
    octaves: Sequence[int],
    families: Optional[Sequence[str]],
    note_ranges_: Optional[Mapping[str, Sequence[int]]],
) -> dict[str, dict[str, tuple[list[int], list[int]]]]:
    """label → family → (programs the SoundFont has in bank 0, notes of the family for the class), only the
    families that can play the class. Errors name the SoundFont when a class has no such family."""
    fams = family_programs(families)
    have = {f: [p for p in progs if font.preset(p) >= 0] for f, progs in fams.items()}
    options = _class_options(kind, note_ranges(list(fams), note_ranges_), octaves)
    out: dict[str, dict[str, tuple[list[int], list[int]]]] = {}
    for label, by_family in options.items():
        out[label] = {f: (have[f], notes) for f, notes in by_family.items() if notes and have[f]}
        if not out[label]:
            missing = [f"{f} (GM programs {fams[f][0]}-{fams[f][-1]})" for f in by_family if not have[f]]
            raise SoundFontError(
                f"{font.path}: class {label!r} cannot be rendered: no preset in bank 0 for "
                f"{', '.join(missing) or 'any family'} that plays it"
            )
    return out


def draw_note(
    font: SoundFont,
    label: str,
    choices: dict[str, tuple[list[int], list[int]]],
    rng: np.random.Generator,
    velocity: Sequence[int],
) -> Note:
    """A family, one of its programs, a note and a velocity, uniformly (in that order)."""
    families = list(choices)
    family = families[int(rng.integers(len(families)))]
    programs, notes = choices[family]
    program = programs[int(rng.integers(len(programs)))]
    midi = notes[int(rng.integers(len(notes)))]
    vel = int(rng.integers(int(velocity[0]), int(velocity[1]) + 1))
    return Note(label, family, program, font.preset(program), midi, vel)


def _wav_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    buf = _io.BytesIO()
    sf.write(buf, x, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def render_audible(
    font: SoundFont,
    label: str,
    choices: dict[str, tuple[list[int], list[int]]],
    rng: np.random.Generator,
    velocity: Sequence[int],
    n: int,
    hold: int,
) -> tuple[Note, np.ndarray]:
    """Draw a note of ``label`` and render it; a draw that renders silence is redrawn."""
    for _ in range(MAX_REDRAWS):
        note = draw_note(font, label, choices, rng, velocity)
        x = font.render(note.preset, note.midi, note.velocity, n, hold)
        if float(np.abs(x).max(initial=0.0)) >= SILENCE:
            return note, x
    raise SoundFontError(
        f"{font.path}: {MAX_REDRAWS} draws of class {label!r} rendered silence "
        f"(presets without samples for those keys?)"
    )


def write_soundfont_task(
    root: Union[str, os.PathLike],
    task: str,
    seed: int,
    sf2: Optional[str] = None,
    clips_per_class: int = 20,
    duration: float = 1.0,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    velocity: Sequence[int] = (60, 110),
    hold: float = 0.75,
    octaves: Sequence[int] = DEFAULT_OCTAVES,
    families: Optional[list[str]] = None,
    note_ranges: Optional[dict[str, list[int]]] = None,
    gain_db: float = 0.0,
    sample_rate: int = 16000,
    overwrite: bool = False,
) -> Path:
    """Render a SoundFont task under ``root`` (module docstring); returns the CSV path.

    Args:
        root: EVAR root to write into.
        task: task name ending in ``family``, ``octave`` or ``pitch_class`` (its kind).
        seed: random seed (same seed and SoundFont → byte-identical files).
        sf2: a GM ``.sf2`` file; None = pretty_midi's TimGM6mb.sf2.
        clips_per_class: clips per class (>= 3: every split gets one).
        duration: clip length in seconds (also the task's ``unit_sec``).
        splits: train, valid, test ratios per class (valid and test get >= 1 clip).
        velocity: ``[low, high]`` MIDI velocities (uniform integers).
        hold: share of the clip the key is held before its release.
        octaves: octave classes of an ``octave`` task.
        families: instrument families used (None: all eleven; :mod:`datamodules.gm_families`).
        note_ranges: family → ``[low, high]`` playable MIDI notes (overrides the defaults).
        gain_db: output gain of the synthesizer (dB).
        sample_rate: sample rate of the files (folder ``work/<sr_dir>/``).
        overwrite: replace existing files (otherwise an existing CSV/YAML/wav is an error).
    """
    kind = check_soundfont_args(
        task, clips_per_class, duration, splits, velocity, hold, octaves, families, note_ranges, sample_rate
    )
    font = SoundFont(sf2, sample_rate=sample_rate, gain_db=gain_db)
    root = Path(root)
    meta_dir = root / "evar" / "metadata"
    csv_path, yaml_path = meta_dir / f"{task}.csv", meta_dir / f"{task}.yaml"
    check_writable(csv_path, overwrite)
    check_writable(yaml_path, overwrite)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(task.encode("utf-8"))]))
    choices = class_choices(font, kind, octaves, families, note_ranges)
    n = int(round(sample_rate * duration))
    n_train, n_valid, n_test = split_counts(clips_per_class, splits)
    audio_dir = root / "work" / sr_dir(sample_rate) / task
    rows = []
    for label, options in choices.items():
        names = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
        for k, split in enumerate(names):
            note, x = render_audible(font, label, options, rng, velocity, n, int(round(hold * n)))
            peak = float(np.abs(x).max())
            if peak > 0.999:  # a loud preset: scale into range rather than clip
                x = x * (0.999 / peak)
            file_name = f"{label}/{label}_{k:03d}.wav"
            save_bytes(_wav_bytes(x, sample_rate), audio_dir / file_name, overwrite)
            rows.append(
                {
                    "file_name": file_name,
                    "label": label,
                    "split": split,
                    "family": note.family,
                    "program": note.program,
                    "preset": font.preset_name(note.preset),
                    "midi": note.midi,
                    "octave": octave_label(note.midi),
                    "pitch_class": pitch_class_label(note.midi),
                    "velocity": note.velocity,
                    "peak_db": round(20 * np.log10(max(peak, 1e-12)), 3),
                }
            )
    spec = {
        "name": task,
        "unit_sec": float(duration),
        "folds": 0,
        "folder": task,
        "multilabel": False,
        "description": f"{kind} of notes rendered from {font.path.name} (seed {seed})",
    }
    save_csv(pd.DataFrame(rows), csv_path, overwrite=overwrite)
    save_text(yaml.safe_dump(spec, sort_keys=False), yaml_path, overwrite=overwrite)
    return csv_path
