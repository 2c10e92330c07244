"""Log-mel front end of M2D-style audio ViTs, in plain torch (no torchaudio, no nnAudio).

Behaviour (the official M2D front end):

* periodic Hann window of ``win_length`` samples (centred in ``n_fft`` when shorter);
* STFT as two strided ``conv1d`` with windowed cosine / sine kernels (``n_fft // 2 + 1`` bins),
  centred: the signal is reflect-padded by ``n_fft // 2`` on both sides, so a clip of ``S`` samples
  gives ``1 + S // hop_length`` frames;
* power spectrogram ``|X|^2`` (computed as ``sqrt(re^2 + im^2) ** 2``, the rounding order of the
  reference front end, so the log-mel of the official code is reproduced bit for bit);
* Slaney mel filterbank (Slaney mel scale, triangular filters, area normalisation ``2 / (f_hi -
  f_lo)``), built in float64 and rounded to float32 where the reference rounds;
* ``log(mel + 1.1920929e-07)`` (float32 machine epsilon).

Normalisation ``(x - mean) / std`` is applied by the encoders (their ``norm_stats``), not here.

Presets (:data:`M2D_FRONTENDS`): 16 kHz: n_fft = window = 400, hop 160, 80 mels, 50-8000 Hz;
32 kHz: n_fft = window = 800, hop 320, 80 mels, 50-16000 Hz (the official M2D ``p32k`` setting).
:meth:`LogMelSpectrogram.for_display` (:data:`DISPLAY_FRONTEND`): the spectrogram drawn for models without a
log-mel front end of their own (e.g. CREPE): 64 ms windows every 10 ms, 96 mels from 30 Hz to Nyquist.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_EPS: float = float(torch.finfo(torch.float32).eps)  # 1.1920929e-07

#: Front-end settings of M2D per sample rate (Hz).
M2D_FRONTENDS: dict[int, dict[str, float]] = {
    16000: dict(n_fft=400, win_length=400, hop_length=160, f_min=50.0, f_max=8000.0),
    32000: dict(n_fft=800, win_length=800, hop_length=320, f_min=50.0, f_max=16000.0),
}

#: Display front end (seconds; mel bands, Hz) for models without a log-mel of their own.
DISPLAY_FRONTEND: dict[str, float] = dict(window_seconds=0.064, hop_seconds=0.01, n_mels=96, f_min=30.0)


def _linspace64(start: float, stop: float, num: int) -> Tensor:
    """float64 ``[num]`` evenly spaced values, endpoint exact (``i * step + start``)."""
    if num == 1:
        return torch.tensor([start], dtype=torch.float64)
    step = (stop - start) / (num - 1)
    y = torch.arange(num, dtype=torch.float64) * step + start
    y[-1] = stop
    return y


def periodic_hann(win_length: int) -> Tensor:
    """float64 ``[win_length]`` periodic Hann window ``0.5 + 0.5 cos(phi)``, phi evenly spaced over
    [-pi, pi] on ``win_length + 1`` points with the last point dropped (= ``0.5 - 0.5 cos(2 pi n / N)``)."""
    phi = _linspace64(-math.pi, math.pi, win_length + 1)[:win_length]
    return 0.5 + 0.5 * torch.cos(phi)


def fourier_kernels(n_fft: int, win_length: int) -> tuple[Tensor, Tensor]:
    """Windowed DFT kernels for a conv1d STFT.

    Returns ``(wcos, wsin)``, each float32 ``[n_fft // 2 + 1, 1, n_fft]``: ``cos(2 pi k s / n_fft)`` and
    ``sin(...)`` (computed in float64, rounded to float32) times the float32 periodic Hann window
    (zero-padded to ``n_fft`` and centred when ``win_length < n_fft``)."""
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} must be <= n_fft {n_fft}")
    bins = n_fft // 2 + 1
    s = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    phase = (2 * math.pi * k) * s / n_fft
    cos = torch.cos(phase).to(torch.float32)
    sin = torch.sin(phase).to(torch.float32)
    window = torch.zeros(n_fft, dtype=torch.float64)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = periodic_hann(win_length)
    window = window.to(torch.float32)
    return (cos * window)[:, None, :], (sin * window)[:, None, :]


_F_SP = 200.0 / 3  # Slaney: linear part, Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(hz: float) -> float:
    """Slaney mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    if hz >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + math.log(hz / _MIN_LOG_HZ) / _LOGSTEP
    return hz / _F_SP


def mel_to_hz_slaney(mels: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel_slaney` on a float64 tensor."""
    hz = _F_SP * mels
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log_part, hz)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """float32 ``[n_mels, n_fft // 2 + 1]`` Slaney mel filterbank with area normalisation.

    Band edges: ``n_mels + 2`` points evenly spaced on the Slaney mel scale between ``f_min`` and
    ``f_max``; filter i is the triangle rising from edge i to edge i+1 and falling to edge i+2,
    evaluated at the FFT bin frequencies ``linspace(0, sr/2, n_fft//2 + 1)``, then scaled by
    ``2 / (edge[i+2] - edge[i])``."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"Need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}, sample_rate={sample_rate}"
        )
    fft_freqs = _linspace64(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = _linspace64(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2)
    edges = mel_to_hz_slaney(mel_pts)  # [n_mels + 2] Hz
    fdiff = edges[1:] - edges[:-1]
    ramps = edges[:, None] - fft_freqs[None, :]  # [n_mels + 2, bins]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    tri = torch.clamp(torch.minimum(lower, upper), min=0.0).to(torch.float32)  # stored in float32 ...
    enorm = 2.0 / (edges[2:] - edges[:-2])
    return (tri.to(torch.float64) * enorm[:, None]).to(torch.float32)  # ... then area-normalised


class LogMelSpectrogram(nn.Module):
    """Audio ``[B, S]`` -> log-mel ``[B, 1, n_mels, 1 + S // hop_length]`` (not normalised).

    All kernels are non-persistent buffers (they never appear in a state dict)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 50.0,
        f_max: float = 8000.0,
        eps: float = LOG_EPS,
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.win_length = int(win_length)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.eps = float(eps)
        wcos, wsin = fourier_kernels(self.n_fft, self.win_length)
        self.register_buffer("wcos", wcos, persistent=False)
        self.register_buffer("wsin", wsin, persistent=False)
        fb = slaney_mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)
        self.register_buffer("mel_fb", fb, persistent=False)

    @classmethod
    def for_m2d(cls, sample_rate: int = 16000, n_mels: int = 80) -> "LogMelSpectrogram":
        """The M2D front end for ``sample_rate`` 16000 or 32000 (see :data:`M2D_FRONTENDS`)."""
        if sample_rate not in M2D_FRONTENDS:
            raise ValueError(f"No M2D front end for sample rate {sample_rate}; supported: {sorted(M2D_FRONTENDS)}")
        return cls(sample_rate=sample_rate, n_mels=n_mels, **M2D_FRONTENDS[sample_rate])

    @classmethod
    def for_display(cls, sample_rate: int) -> "LogMelSpectrogram":
        """The display front end (:data:`DISPLAY_FRONTEND`) at ``sample_rate``: frames every
        ``hop_seconds``, windows of ``window_seconds`` (n_fft = window), up to ``sample_rate / 2``."""
        d = DISPLAY_FRONTEND
        win = int(round(d["window_seconds"] * sample_rate))
        return cls(
            sample_rate=sample_rate,
            n_fft=win,
            win_length=win,
            hop_length=max(1, int(round(d["hop_seconds"] * sample_rate))),
            n_mels=int(d["n_mels"]),
            f_min=d["f_min"],
            f_max=sample_rate / 2,
        )

    def num_frames(self, num_samples: Tensor | int) -> Tensor | int:
        """Frames produced for ``num_samples`` samples: ``1 + num_samples // hop_length``."""
        return 1 + num_samples // self.hop_length

    def power_spectrogram(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> power spectrogram ``[B, n_fft // 2 + 1, T]``."""
        if audio.dim() != 2:
            raise ValueError(f"Expected audio [B, S], got shape {tuple(audio.shape)}")
        pad = self.n_fft // 2
        if audio.shape[-1] <= pad:
            raise ValueError(
                f"Audio of {audio.shape[-1]} samples is too short for reflect padding of "
                f"{pad} samples (need more than n_fft // 2 = {pad})"
            )
        x = F.pad(audio[:, None, :].to(self.wcos.dtype), (pad, pad), mode="reflect")
        re = F.conv1d(x, self.wcos, stride=self.hop_length)
        im = F.conv1d(x, self.wsin, stride=self.hop_length)
        return torch.sqrt(re.pow(2) + im.pow(2)) ** 2

    def forward(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> ``log(mel + eps)`` ``[B, 1, n_mels, T]``."""
        mel = torch.matmul(self.mel_fb, self.power_spectrogram(audio))
        return torch.log(mel + self.eps)[:, None]

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}"
        )
