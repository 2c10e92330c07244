"""General MIDI programs grouped into NSynth's instrument families, with a playable note range per family.

NSynth (Engel et al., 2017) labels notes by eleven instrument families; a General MIDI SoundFont has 128
melodic programs (0-based numbers below; GM's 1-based names in the comments). The grouping:

=============  ===========================  ==========================================  =================
family         GM programs (0-based)        instruments                                 notes (MIDI)
=============  ===========================  ==========================================  =================
keyboard       0-7                          pianos, electric pianos, harpsichord, clav  21-108
mallet         8-15                         celesta ... dulcimer (chromatic percussion) 60-96
organ          16-20                        drawbar, percussive, rock, church, reed org 36-96
guitar         24-31                        nylon ... guitar harmonics                  40-84
bass           32-39                        acoustic ... synth bass 2                   28-60
string         40-46, 48-51                 violin ... harp, string ensembles           36-96
vocal          52-54                        choir aahs, voice oohs, synth voice         48-79
brass          56-63                        trumpet ... synth brass 2                   40-82
reed           21-23, 64-71                 accordion, harmonica, saxes, oboe, clarinet 48-84
flute          72-79                        piccolo ... ocarina                         60-96
synth_lead     80-87                        lead 1 (square) ... lead 8 (bass + lead)    36-96
=============  ===========================  ==========================================  =================

Not used: timpani (47) and orchestra hit (55) (percussive, no clear family), the synth pads, effects,
ethnic and percussive programs (88-127) and the drum bank (128). The note ranges are conservative playing
ranges of the family's instruments; a task may override them.

The octave of MIDI note ``m`` is the study's (:data:`datamodules.metadata.LABEL_MAPS` ``midi_to_octave``,
as for the NSynth pitch task): ``octave_<m // 12 - 1>`` (MIDI 60 = C4 → ``octave_4``); the pitch class is
``m % 12`` named C, C#, D, ..., B.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from .metadata import LABEL_MAPS

__all__ = [
    "GM_FAMILIES",
    "NOTE_RANGES",
    "PITCH_CLASSES",
    "family_programs",
    "note_ranges",
    "octave_label",
    "pitch_class_label",
    "octave_notes",
]

#: family → GM program numbers (0-based), NSynth's family names.
GM_FAMILIES: dict[str, tuple[int, ...]] = {
    "keyboard": tuple(range(0, 8)),
    "mallet": tuple(range(8, 16)),
    "organ": tuple(range(16, 21)),
    "guitar": tuple(range(24, 32)),
    "bass": tuple(range(32, 40)),
    "string": tuple(range(40, 47)) + tuple(range(48, 52)),
    "vocal": tuple(range(52, 55)),
    "brass": tuple(range(56, 64)),
    "reed": tuple(range(21, 24)) + tuple(range(64, 72)),
    "flute": tuple(range(72, 80)),
    "synth_lead": tuple(range(80, 88)),
}
#: family → playable MIDI notes (inclusive).
NOTE_RANGES: dict[str, tuple[int, int]] = {
    "keyboard": (21, 108),
    "mallet": (60, 96),
    "organ": (36, 96),
    "guitar": (40, 84),
    "bass": (28, 60),
    "string": (36, 96),
    "vocal": (48, 79),
    "brass": (40, 82),
    "reed": (48, 84),
    "flute": (60, 96),
    "synth_lead": (36, 96),
}
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def family_programs(families: Optional[Sequence[str]] = None) -> dict[str, tuple[int, ...]]:
    """The GM programs of ``families`` (None: all eleven, in :data:`GM_FAMILIES` order).

    >>> family_programs(["flute"])
    {'flute': (72, 73, 74, 75, 76, 77, 78, 79)}
    >>> family_programs(["drums"])
    Traceback (most recent call last):
    ...
    ValueError: Unknown instrument family 'drums'; known: keyboard, mallet, organ, guitar, bass, string, vocal, brass, reed, flute, synth_lead
    """
    names = list(GM_FAMILIES) if families is None else list(families)
    for f in names:
        if f not in GM_FAMILIES:
            raise ValueError(f"Unknown instrument family {f!r}; known: {', '.join(GM_FAMILIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"families lists a family twice: {names}")
    return {f: GM_FAMILIES[f] for f in names}


def note_ranges(
    families: Sequence[str], overrides: Optional[Mapping[str, Sequence[int]]] = None
) -> dict[str, tuple[int, int]]:
    """Playable ``(low, high)`` MIDI notes of each family: :data:`NOTE_RANGES` with ``overrides``.

    >>> note_ranges(["bass", "flute"], {"flute": [72, 84]})
    {'bass': (28, 60), 'flute': (72, 84)}
    """
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(families)
    if unknown:
        raise ValueError(f"note_ranges names families not in the task: {sorted(unknown)} (families: {list(families)})")
    out = {}
    for f in families:
        lo, hi = (int(v) for v in overrides.get(f, NOTE_RANGES[f]))
        if not 0 <= lo <= hi <= 127:
            raise ValueError(f"note_ranges.{f}: [{lo}, {hi}] is not a MIDI range 0 <= low <= high <= 127")
        out[f] = (lo, hi)
    return out


def octave_label(midi: int) -> str:
    """The study's octave class of a MIDI note.

    >>> octave_label(60), octave_label(59), octave_label(21)
    ('octave_4', 'octave_3', 'octave_0')
    """
    return LABEL_MAPS["midi_to_octave"](str(int(midi)))


def pitch_class_label(midi: int) -> str:
    """The pitch class of a MIDI note (C … B).

    >>> pitch_class_label(60), pitch_class_label(70)
    ('C', 'A#')
    """
    return PITCH_CLASSES[int(midi) % 12]


def octave_notes(octave: int) -> range:
    """MIDI notes of octave ``octave`` (:func:`octave_label`'s inverse).

    >>> list(octave_notes(4))[:2], list(octave_notes(4))[-1]
    ([60, 61], 71)
    """
    return range(12 * (octave + 1), 12 * (octave + 2))
