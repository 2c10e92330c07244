"""A toy encoder with planted pitch units (FFT of 4096-sample frames), for the tuning tests.

Unit 0 of site ``units`` fires (activation > 0) exactly when most of a loud frame's energy lies above
``cutoff_midi`` (so, for a pure tone, when its pitch is above the cutoff); unit 1 when most of it lies in
the band ``band_midi``; unit 2 never fires. A frame quieter than 1/20 of the clip's loudest frame (the
silent onset) gives -1 everywhere, so only the tone is measured.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lightning_modules.encoders.base import AudioEncoder

FRAME, HOP = 4096, 1024


def midi_hz(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


class PitchUnits(AudioEncoder):
    sample_rate = 16000
    embed_dim = 3
    neuron_sites = ["units"]
    site_neurons = [3]
    channel_axis = -1
    name = "pitch_units"

    def __init__(self, cutoff_midi: float = 61.0, band_lo: float = 57.0, band_hi: float = 63.0) -> None:
        super().__init__()
        self.cutoff, self.lo, self.hi = midi_hz(cutoff_midi), midi_hz(band_lo), midi_hz(band_hi)
        self.units = nn.Identity()
        self.scale = nn.Parameter(torch.ones(()))  # a parameter, so Lightning has something to place

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        frames = audio.unfold(-1, FRAME, HOP) * torch.hann_window(FRAME, device=audio.device)  # [B, P, FRAME]
        power = torch.fft.rfft(frames).abs() ** 2  # [B, P, F]
        f = torch.fft.rfftfreq(FRAME, 1 / self.sample_rate).to(audio.device)
        total = power.sum(-1)
        high = power[..., f > self.cutoff].sum(-1) / total
        band = power[..., (f > self.lo) & (f < self.hi)].sum(-1) / total
        act = torch.stack([high - 0.5, band - 0.5, torch.full_like(high, -1.0)], -1)  # [B, P, 3]
        loud = total > total.amax(1, keepdim=True) / 20
        act = torch.where(loud[..., None], act, torch.full_like(act, -1.0)) * self.scale
        return self.units(act).mean(1)
