"""A tiny valid SoundFont 2 file written from scratch (RIFF ``sfbk``: INFO, sdta, pdta), for tests.

Each preset is one instrument with one zone playing one looped synthetic sample (a few periods of a
waveform at MIDI 60) over the whole keyboard, so every key sounds (pitch-shifted by the synthesizer).
Written from the SoundFont 2.01 specification (record layouts of phdr/pbag/pmod/pgen/inst/ibag/imod/igen/shdr).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050
GEN_KEY_RANGE, GEN_INSTRUMENT, GEN_SAMPLE_MODES, GEN_SAMPLE_ID = 43, 41, 54, 53
GEN_RELEASE_VOL_ENV = 38


def _chunk(tag: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return tag + struct.pack("<I", len(data)) + data + pad


def _list(tag: bytes, chunks: list[bytes]) -> bytes:
    return _chunk(b"LIST", tag + b"".join(chunks))


def _name(s: str) -> bytes:
    return s.encode("ascii")[:19].ljust(20, b"\0")


def waveform(kind: str, periods: int = 40, f0: float = 261.6255653005986) -> np.ndarray:
    """``periods`` whole periods of ``kind`` ('sine' | 'saw' | 'square') at ``f0`` as int16."""
    n = int(round(periods * SAMPLE_RATE / f0))
    phase = (np.arange(n) * f0 / SAMPLE_RATE) % 1.0
    x = {"sine": np.sin(2 * np.pi * phase), "saw": 2 * phase - 1, "square": np.where(phase < 0.5, 1.0, -1.0)}[kind]
    return (0.5 * x * 32767).astype("<i2")


def write_sf2(path: str | Path, presets: dict[int, str]) -> Path:
    """Write a SoundFont with one preset per GM program (``{program: waveform}``, bank 0); returns the path."""
    programs = sorted(presets)
    samples = [waveform(presets[p]) for p in programs]
    smpl, offsets = b"", []
    for s in samples:
        offsets.append(len(smpl) // 2)
        smpl += s.tobytes() + b"\0" * 92  # 46 zero samples after each sample (the specification asks for them)
    info = [_chunk(b"ifil", struct.pack("<HH", 2, 1)), _chunk(b"isng", b"EMU8000\0"), _chunk(b"INAM", b"aape test\0\0")]
    phdr = pbag = pgen = inst = ibag = igen = shdr = b""
    for i, (prog, s, off) in enumerate(zip(programs, samples, offsets)):
        phdr += _name(f"preset {prog}") + struct.pack("<HHHIII", prog, 0, i, 0, 0, 0)
        pbag += struct.pack("<HH", i, 0)
        pgen += struct.pack("<HH", GEN_INSTRUMENT, i)
        inst += _name(f"inst {prog}") + struct.pack("<H", i)
        ibag += struct.pack("<HH", 3 * i, 0)
        igen += struct.pack("<HBB", GEN_KEY_RANGE, 0, 127)
        igen += struct.pack("<HH", GEN_SAMPLE_MODES, 1)
        igen += struct.pack("<HH", GEN_SAMPLE_ID, i)
        end = off + len(s)
        shdr += _name(f"sample {prog}") + struct.pack("<IIIIIBbHH", off, end, off, end, SAMPLE_RATE, 60, 0, 0, 1)
    n = len(programs)
    phdr += _name("EOP") + struct.pack("<HHHIII", 0, 0, n, 0, 0, 0)
    pbag += struct.pack("<HH", n, 0)
    pgen += struct.pack("<HH", 0, 0)
    inst += _name("EOI") + struct.pack("<H", n)
    ibag += struct.pack("<HH", 3 * n, 0)
    igen += struct.pack("<HH", 0, 0)
    shdr += _name("EOS") + struct.pack("<IIIIIBbHH", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    mod = b"\0" * 10
    pdta = [
        _chunk(b"phdr", phdr),
        _chunk(b"pbag", pbag),
        _chunk(b"pmod", mod),
        _chunk(b"pgen", pgen),
        _chunk(b"inst", inst),
        _chunk(b"ibag", ibag),
        _chunk(b"imod", mod),
        _chunk(b"igen", igen),
        _chunk(b"shdr", shdr),
    ]
    body = b"sfbk" + _list(b"INFO", info) + _list(b"sdta", [_chunk(b"smpl", smpl)]) + _list(b"pdta", pdta)
    path = Path(path)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
