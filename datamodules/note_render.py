"""Render single notes of a General MIDI SoundFont with ``tinysoundfont`` (offline, deterministic).

:func:`render_note` is the one place a note is rendered; the tuning stimuli (:mod:`datamodules.stimuli`)
use it, and any other task builder that needs instrument sound can too. The default SoundFont is the small
General MIDI bank ``TimGM6mb.sf2`` that the ``pretty_midi`` wheel ships, located without importing pretty_midi
(:func:`datamodules.soundfont.default_soundfont`).
"""

from __future__ import annotations

import functools
import os
from typing import Optional, Union

import numpy as np
import tinysoundfont

from .soundfont import default_soundfont

__all__ = ["default_soundfont", "render_note", "preset_name"]


@functools.lru_cache(maxsize=4)
def _synth(soundfont: str, sample_rate: int) -> tuple[tinysoundfont.Synth, int]:
    synth = tinysoundfont.Synth(samplerate=int(sample_rate))
    try:
        sfid = synth.sfload(soundfont)
    except Exception as e:  # tinysoundfont raises its own exception type for unreadable files
        raise ValueError(f"{soundfont}: not a readable SoundFont ({e})") from e
    return synth, sfid


def _check(program: int, midi: int, velocity: int) -> None:
    if not 0 <= program <= 127:
        raise ValueError(f"program must be a General MIDI program 0..127, got {program}")
    if not 0 <= midi <= 127:
        raise ValueError(f"midi must be a MIDI note 0..127, got {midi}")
    if not 1 <= velocity <= 127:
        raise ValueError(f"velocity must be 1..127, got {velocity}")


def render_note(
    program: int,
    midi: int,
    n: int,
    sample_rate: int,
    velocity: int = 100,
    hold: float = 0.8,
    soundfont: Union[str, os.PathLike, None] = None,
) -> np.ndarray:
    """One note of General MIDI ``program`` at MIDI note ``midi``: mono float64 ``[n]``.

    The key is held for ``hold`` × the clip, then released (the release tail stays in the clip). Rendering is
    deterministic (no randomness in the synthesiser); the voices are stopped before and after, so notes
    rendered one after the other do not bleed into each other.

    >>> x = render_note(0, 60, 1600, 16000)
    >>> x.shape, bool(np.abs(x).max() > 0)
    ((1600,), True)
    """
    program, midi, velocity = int(program), int(midi), int(velocity)
    _check(program, midi, velocity)
    synth, sfid = _synth(str(soundfont or default_soundfont()), int(sample_rate))
    synth.sounds_off(0)
    synth.generate(64)  # flush voices of an earlier note
    synth.program_select(0, sfid, 0, program)
    on = max(1, min(n, int(round(hold * n))))
    synth.noteon(0, midi, velocity)
    a = np.frombuffer(synth.generate(on), dtype=np.float32).reshape(-1, 2)
    synth.noteoff(0, midi)
    b = np.frombuffer(synth.generate(n - on), dtype=np.float32).reshape(-1, 2) if n > on else np.zeros((0, 2))
    synth.sounds_off(0)
    return np.concatenate([a, b]).mean(1).astype(np.float64)


def preset_name(program: int, soundfont: Optional[Union[str, os.PathLike]] = None, sample_rate: int = 16000) -> str:
    """The SoundFont's name of General MIDI ``program`` (bank 0), e.g. ``'Violin'`` for 40."""
    synth, sfid = _synth(str(soundfont or default_soundfont()), int(sample_rate))
    return str(synth.sfpreset_name(sfid, 0, int(program)))
