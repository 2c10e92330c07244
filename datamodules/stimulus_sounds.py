"""The sounds of the tuning stimuli: one function per dimension, ``(rng, value, n, sr, source) → [n]``.

Each function fixes its dimension at ``value`` and draws everything else from ``rng`` (the "nuisance"
parameters: pitch, timbre, onset, level, phases, noise), so a unit whose response follows the value is
driven by that dimension and not by a correlate. Every clip is float64 in [-1, 1]; its peak level is a
nuisance parameter (-20 … -3 dBFS) except for ``loudness``, whose value is the clip's RMS level in dBFS
over its sounding part. Only the ``rng`` passed in is used (deterministic from a seed).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .note_render import render_note

#: General MIDI programs drawn as the instrument of a SoundFont pitch clip (pitched, sustained or plucked).
PITCHED_PROGRAMS = (0, 4, 11, 19, 24, 32, 40, 42, 48, 56, 60, 65, 68, 71, 73, 80)
SOURCES = ("tone", "sine", "soundfont")
#: Partials of a tone beyond the loudest this many (by order) are skipped (speed; low notes stay rich).
MAX_PARTIALS = 80


def midi_to_hz(midi: float) -> float:
    """Equal temperament, A4 (MIDI 69) = 440 Hz.

    >>> midi_to_hz(69), round(midi_to_hz(60), 3)
    (440.0, 261.626)
    """
    return 440.0 * 2.0 ** ((float(midi) - 69.0) / 12.0)


def partials(
    rng: np.random.Generator, f0: float, n: int, sr: int, amp: Callable[[np.ndarray], np.ndarray], jitter: float = 0.0
) -> np.ndarray:
    """Sum of partials ``k f0 (1 + jitter u_k)`` (``u_k`` uniform in [-1, 1], none for k = 1) with amplitudes
    ``amp(freqs)`` and random phases, below 0.45 × ``sr``, at most :data:`MAX_PARTIALS` of those above -80 dB
    of the loudest: ``[n]`` (not normalised)."""
    t = np.arange(n) / sr
    k = np.arange(1, max(2, int(0.45 * sr / f0)) + 1, dtype=np.float64)
    u = rng.uniform(-1.0, 1.0, size=len(k))
    u[0] = 0.0
    freqs = f0 * k * (1.0 + jitter * u)
    keep = (freqs < 0.45 * sr) & (freqs > 0)
    freqs = freqs[keep]
    a = amp(freqs)
    audible = a >= 1e-4 * a.max()
    freqs, a = freqs[audible][:MAX_PARTIALS], a[audible][:MAX_PARTIALS]
    ph = rng.uniform(0.0, 2 * np.pi, size=len(freqs))
    return a @ np.sin(2 * np.pi * freqs[:, None] * t[None, :] + ph[:, None])


def envelope(rng: np.random.Generator, n: int, sr: int, onset_max: float = 0.1) -> np.ndarray:
    """Random onset (0 … ``onset_max`` of the clip silent), attack 5–30 ms, exponential decay, 10 ms release."""
    onset = int(rng.uniform(0.0, onset_max) * n)
    attack = max(1, int(rng.uniform(0.005, 0.030) * sr))
    tau = rng.uniform(0.4, 2.0)
    env = np.zeros(n)
    m = n - onset
    env[onset:] = np.minimum(1.0, (np.arange(m) + 1) / attack) * np.exp(-np.arange(m) / sr / tau)
    rel = min(m, max(1, int(0.010 * sr)))
    env[n - rel :] *= np.linspace(1.0, 0.0, rel)
    return env


def finish(rng: np.random.Generator, x: np.ndarray, level: bool = True) -> np.ndarray:
    """Add white noise 35–50 dB below the sound and (``level``) scale to a random peak of -20 … -3 dBFS;
    without ``level`` the peak is 1."""
    rms = np.sqrt(np.mean(x**2)) or 1.0
    x = x + rng.standard_normal(len(x)) * rms * 10 ** (-rng.uniform(35.0, 50.0) / 20)
    peak = 10 ** (rng.uniform(-20.0, -3.0) / 20) if level else 1.0
    return x * peak / max(np.abs(x).max(), 1e-12)


def _tone(rng: np.random.Generator, midi: float, n: int, sr: int, jitter: float = 0.0) -> np.ndarray:
    """A harmonic tone at ``midi`` with a random spectral roll-off ``k ** -a``, ``a`` in [0.8, 3]."""
    f0 = midi_to_hz(midi)
    a = rng.uniform(0.8, 3.0)
    return partials(rng, f0, n, sr, lambda f: (f / f0) ** -a, jitter) * envelope(rng, n, sr)


def pitch(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "tone") -> np.ndarray:
    """MIDI note ``value``: a harmonic tone of random timbre, (``sine``) a pure tone, or (``soundfont``) a
    random pitched GM instrument at a random velocity."""
    if source == "soundfont":
        program = int(rng.choice(PITCHED_PROGRAMS))
        x = render_note(
            program, int(round(value)), n, sr, velocity=int(rng.integers(60, 128)), hold=rng.uniform(0.5, 0.9)
        )
        return finish(rng, x)
    if source == "sine":
        ph = rng.uniform(0.0, 2 * np.pi)
        x = np.sin(2 * np.pi * midi_to_hz(value) * np.arange(n) / sr + ph) * envelope(rng, n, sr)
        return finish(rng, x)
    return finish(rng, _tone(rng, value, n, sr))


def loudness(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "tone") -> np.ndarray:
    """RMS level ``value`` dBFS (over the samples above -60 dB of the peak) of a tone at a random pitch
    (MIDI 36 … 84) and timbre; clipped to [-1, 1] (values above about -6 dBFS clip)."""
    x = pitch(rng, rng.uniform(36.0, 84.0), n, sr, source)
    sounding = np.abs(x) > 1e-3 * np.abs(x).max()
    rms = np.sqrt(np.mean(x[sounding] ** 2))
    return np.clip(x * 10 ** (value / 20) / max(rms, 1e-12), -1.0, 1.0)


def centroid(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "tone") -> np.ndarray:
    """Spectral centroid near ``value`` Hz: a low harmonic tone (MIDI 33 … 45) whose partials follow a
    Gaussian in log-frequency centred on ``value`` (0.4–0.7 octave wide)."""
    f0 = midi_to_hz(rng.uniform(33.0, 45.0))
    width = rng.uniform(0.4, 0.7)
    amp = lambda f: np.exp(-0.5 * (np.log2(f / value) / width) ** 2)  # noqa: E731
    return finish(rng, partials(rng, f0, n, sr, amp) * envelope(rng, n, sr))


def noise_bandwidth(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "tone") -> np.ndarray:
    """Band-limited noise ``value`` octaves wide, centred at a random frequency (log-uniform) that keeps
    the band within 50 Hz … 0.47 × ``sr``."""
    lo_c, hi_c = 50.0 * 2 ** (value / 2), 0.47 * sr / 2 ** (value / 2)
    if lo_c > hi_c:
        raise ValueError(f"noise_bandwidth {value} octaves does not fit in 50 Hz … {0.47 * sr:g} Hz")
    c = float(np.exp(rng.uniform(np.log(lo_c), np.log(hi_c))))
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(f < c * 2 ** (-value / 2)) | (f > c * 2 ** (value / 2))] = 0.0
    return finish(rng, np.fft.irfft(spec, n) * envelope(rng, n, sr, onset_max=0.05))


def onset_rate(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "tone") -> np.ndarray:
    """``value`` note onsets per second: short tone bursts (random pitch MIDI 48 … 84 and timbre, one per
    clip) starting at a random phase of the period; a burst lasts half the period, at most 120 ms."""
    period = int(round(sr / value))
    burst = max(16, min(period // 2, int(0.12 * sr)))
    note = _tone(rng, rng.uniform(48.0, 84.0), burst, sr)
    note *= np.hanning(2 * burst)[burst:] ** 0.5  # fade out each burst
    x = np.zeros(n)
    for start in range(int(rng.integers(0, period)), n, period):
        m = min(burst, n - start)
        x[start : start + m] += note[:m]
    return finish(rng, x)


def inharmonicity(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "tone") -> np.ndarray:
    """Partial jitter ``value``: partial k at ``k f0 (1 + value u_k)``, ``u_k`` uniform in [-1, 1] (0 is a
    harmonic tone); random pitch MIDI 40 … 76 and timbre."""
    return finish(rng, _tone(rng, rng.uniform(40.0, 76.0), n, sr, jitter=value))


def instrument(rng: np.random.Generator, value: float, n: int, sr: int, source: str = "soundfont") -> np.ndarray:
    """General MIDI program ``value`` at the fixed pitch MIDI 60 (random velocity and key hold)."""
    x = render_note(int(value), 60, n, sr, velocity=int(rng.integers(60, 128)), hold=rng.uniform(0.5, 0.9))
    return finish(rng, x)
