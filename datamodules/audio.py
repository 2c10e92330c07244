"""Audio loading (``soundfile``), resampling and crop/pad — plain functions, no Lightning.

* :func:`load_audio` reads a file as mono float32 ``[S]`` (mean over channels) and raises
  :class:`AudioFileError` (or ``FileNotFoundError``) naming the file — and the metadata CSV row when
  given — for a missing, unreadable/corrupt or zero-length file, a WAV file whose header promises more
  audio than the file holds (truncated: :func:`wav_shortfall`), NaN/inf samples, or a sample rate that
  differs from the expected one (unless ``resample=True``).
* :func:`resample` is a windowed-sinc polyphase resampler written with ``torch.nn.functional.conv1d``.
* :func:`crop_or_pad` cuts a clip to ``n`` samples (random crop with a given generator, or head crop)
  and right-zero-pads short clips; it returns the number of valid samples as well.
* :func:`crop_seed` derives a reproducible per-clip seed from (seed, epoch, index).
"""

from __future__ import annotations

import math
import os
import struct
from typing import Optional, Union

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

__all__ = ["AudioFileError", "load_audio", "wav_shortfall", "resample", "crop_or_pad", "crop_seed"]


class AudioFileError(ValueError):
    """An audio file that cannot be used (message names the file, the CSV row and the problem)."""


def _ctx(where: Optional[str]) -> str:
    return f" ({where})" if where else ""


def wav_shortfall(path: Union[str, os.PathLike]) -> Optional[tuple[int, int, int]]:
    """For a RIFF/RIFX WAV file whose ``data`` chunk declares more bytes than the file holds (a file cut
    short while being written or copied): ``(declared bytes, available bytes, bytes per frame)``; None
    for a complete WAV, a streamed WAV of unknown length (size 0 or 0xFFFFFFFF) or another format."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos, block_align = 12, 1
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            cid, csize = chunk[:4], struct.unpack(endian + "I", chunk[4:8])[0]
            fmt = f.read(14) if cid == b"fmt " and csize >= 14 else b""
            if len(fmt) == 14:  # a fmt chunk cut short is left to the decoder to refuse
                block_align = max(1, struct.unpack(endian + "H", fmt[12:14])[0])
            elif cid == b"data":
                available = size - pos - 8
                if csize in (0, 0xFFFFFFFF) or csize <= available:
                    return None
                return csize, available, block_align
            pos += 8 + csize + (csize & 1)
    return None


def load_audio(
    path: Union[str, os.PathLike],
    sample_rate: int,
    *,
    resample_audio: bool = False,
    display: Optional[str] = None,
    where: Optional[str] = None,
) -> Tensor:
    """Read an audio file as mono float32 ``[S]`` at ``sample_rate``.

    Args:
        path: file path.
        sample_rate: expected sample rate in Hz.
        resample_audio: resample files at another rate instead of raising.
        display: how to name the file in messages (default: ``path``), e.g. ``work/16k/cremad/x.wav``.
        where: extra context for messages, e.g. ``metadata .../cremad.csv row 3 (line 5)``.
    Returns:
        FloatTensor ``[S]``, S >= 1.
    Raises:
        FileNotFoundError: missing file. AudioFileError: unreadable/corrupt, truncated WAV, empty,
        non-finite samples, sample-rate mismatch.
    """
    name = display or str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file not found: {path}{_ctx(where)}")
    short = wav_shortfall(path)
    if short is not None:
        declared, available, frame = short
        raise AudioFileError(
            f"Audio file {name}{_ctx(where)} is truncated: its WAV header promises {declared // frame} frames "
            f"({declared} bytes of audio), the file holds {available // frame} ({available} bytes)"
        )
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError on bad files
        raise AudioFileError(f"Cannot read audio file {name}{_ctx(where)}: unreadable or corrupt ({e})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"Audio file {name}{_ctx(where)} is empty (zero-length: 0 samples)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioFileError(f"Audio file {name}{_ctx(where)} has {bad} NaN/inf sample value(s)")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if sr != sample_rate:
        if not resample_audio:
            raise AudioFileError(
                f"Expected sample rate {sample_rate} in {name}, got {sr}{_ctx(where)}; "
                f"prepare the files at {sample_rate} Hz or switch resampling on (resample=true)"
            )
        wav = resample(wav, sr, sample_rate)
    return wav


def _sinc_kernel(orig: int, new: int, width_zeros: int = 16, rolloff: float = 0.945) -> tuple[Tensor, int]:
    """Polyphase kernels ``[new, K]`` (float64) and the half width (input samples).

    Output sample ``j = i * new + p`` sits at input time ``t = i * orig + p * orig / new``; phase ``p``
    uses taps at input offsets ``m = -width .. width + orig - 1`` from ``i * orig`` with weights
    ``h(p * orig / new - m)``, ``h`` = Hann-windowed sinc low-pass at ``rolloff * min(1, new/orig)``
    of the input Nyquist frequency.
    """
    fc = min(1.0, new / orig) * rolloff
    width = int(math.ceil(width_zeros / fc))
    m = torch.arange(-width, width + orig, dtype=torch.float64)  # [K]
    p = torch.arange(new, dtype=torch.float64)[:, None] * orig / new  # [new, 1]
    t = p - m[None, :]  # [new, K]
    window = torch.where(t.abs() <= width, torch.cos(math.pi * t / (2 * width)) ** 2, torch.zeros_like(t))
    h = fc * torch.sinc(fc * t) * window
    return h, width


def resample(wav: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Resample ``[..., S]`` from ``orig_sr`` to ``new_sr`` Hz (windowed-sinc, polyphase).

    Output length ``ceil(S * new_sr / orig_sr)``; signal edges are treated as zeros.
    """
    if orig_sr == new_sr:
        return wav
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"Sample rates must be positive, got {orig_sr} -> {new_sr}")
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    h, width = _sinc_kernel(orig, new)
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1]).to(torch.float64)
    n_in = shape[-1]
    n_out = int(math.ceil(n_in * new / orig))
    n_blocks = int(math.ceil(n_out / new))
    # taps reach from i*orig - width to i*orig + width + orig - 1 for i < n_blocks
    right = max(0, (n_blocks - 1) * orig + width + orig - n_in)
    x = torch.nn.functional.pad(x, (width, right))
    y = torch.nn.functional.conv1d(x, h[:, None, :], stride=orig)  # [B, new, n_blocks']
    y = y[..., :n_blocks].transpose(1, 2).reshape(x.shape[0], -1)[:, :n_out]
    return y.to(wav.dtype).reshape(*shape[:-1], n_out)


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends on (seed, epoch, index) only (stable across processes/platforms)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])
    hi, lo = (int(v) for v in state.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) & ((1 << 63) - 1)


def crop_or_pad(
    wav: Tensor, n: int, mode: str = "head", generator: Optional[torch.Generator] = None
) -> tuple[Tensor, int]:
    """Cut or right-zero-pad ``wav [S]`` to ``n`` samples.

    Args:
        wav: FloatTensor ``[S]``.
        n: target length in samples (> 0).
        mode: ``"random"`` (clips longer than ``n`` start at a random offset drawn with ``generator``)
            or ``"head"`` (they keep their first ``n`` samples).
        generator: torch.Generator for ``"random"`` (required there, for reproducibility).
    Returns:
        (FloatTensor ``[n]``, number of valid samples ``min(S, n)``).
    """
    if n <= 0:
        raise ValueError(f"Clip length must be > 0 samples, got {n}")
    if mode not in ("random", "head"):
        raise ValueError(f"Unknown crop mode {mode!r}; expected 'random' or 'head'")
    s = wav.shape[-1]
    if s > n:
        start = 0
        if mode == "random":
            if generator is None:
                raise ValueError("crop_or_pad(mode='random') needs a torch.Generator")
            start = int(torch.randint(0, s - n + 1, (1,), generator=generator))
        return wav[start : start + n].contiguous(), n
    if s == n:
        return wav.contiguous(), n
    out = wav.new_zeros(n)
    out[:s] = wav
    return out, s
