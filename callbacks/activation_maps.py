"""The listening gallery's second, small pass: re-run an encoder on just the clips a gallery shows, with
hooks (:class:`~callbacks.hooks.SiteHooks`) on the sites of the chosen neurons, and keep those neurons'
activations at every position of every clip together with where the position lies (front-end frame,
frequency band) and whether the statistics count it. Also the spectrogram the activations are drawn on.

A plain forward under ``torch.inference_mode`` (a handful of clips, no Lightning loop); the maps themselves
are computed by :func:`analysis.gallery.activation_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from callbacks.hooks import SiteHooks
from lightning_modules.encoders.base import site_view
from lightning_modules.encoders.melspec import LogMelSpectrogram


@dataclass
class ClipPositions:
    """The chosen neurons of one site on one clip: ``values`` float ``[Q, k]`` (k = neurons asked for at that
    site, in the order asked), ``frame`` long ``[Q]`` (first front-end frame of each position, -1 none),
    ``band`` long ``[Q]`` or None (the site has no frequency axis), ``counted`` bool ``[Q]``; Q = the clip's
    positions over every call of the site."""

    values: Tensor
    frame: Tensor
    band: Optional[Tensor]
    counted: Tensor


def record_neurons(
    encoder: nn.Module,
    audio: Tensor,
    lengths: Optional[Tensor],
    neurons: Mapping[int, Sequence[int]],
    tokens: str = "all",
) -> list[dict[int, ClipPositions]]:
    """Run ``encoder(audio [B, S], lengths [B])`` once and return, for each clip, site index → the chosen
    neurons' :class:`ClipPositions` (``neurons``: site index → neuron ids). ``tokens`` is the statistics'
    token policy (which positions are counted)."""
    sites = list(encoder.neuron_sites)
    bad = [l for l in neurons if not 0 <= l < len(sites)]
    if bad:
        raise ValueError(f"site index {bad} out of range: the encoder has {len(sites)} sites")
    b = audio.shape[0]
    parts: list[dict[int, list[tuple[Tensor, Tensor, Optional[Tensor], Tensor]]]] = [{} for _ in range(b)]

    def make_hook(l: int, site: str, ids: Tensor):
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            act = site_view(output, encoder.channel_axis)[..., ids.to(output.device)].float().cpu()  # [R, P, k]
            pos = encoder.positions(site, output)
            counted = pos.counted(tokens).cpu()
            frame = (pos.frame if pos.frame is not None else pos.frames()).cpu().long()
            band = pos.band.cpu().long()[None, :].expand_as(counted) if pos.band is not None else None
            clip = pos.clip.cpu()
            for c in clip.unique().tolist():
                rows = clip == c
                parts[c].setdefault(l, []).append(
                    (
                        act[rows].reshape(-1, act.shape[-1]),
                        frame[rows].reshape(-1),
                        band[rows].reshape(-1) if band is not None else None,
                        counted[rows].reshape(-1),
                    )
                )

        return hook

    hooks = [
        (sites[l], make_hook(l, sites[l], torch.as_tensor(list(ids), dtype=torch.long)))
        for l, ids in neurons.items()
        if len(ids)
    ]
    with SiteHooks(encoder, hooks), torch.inference_mode():
        encoder(audio, lengths)
    out: list[dict[int, ClipPositions]] = []
    for clip_parts in parts:
        rec = {}
        for l, calls in clip_parts.items():
            bands = [c[2] for c in calls]
            rec[l] = ClipPositions(
                values=torch.cat([c[0] for c in calls]),
                frame=torch.cat([c[1] for c in calls]),
                band=torch.cat(bands) if all(x is not None for x in bands) else None,
                counted=torch.cat([c[3] for c in calls]),
            )
        out.append(rec)
    return out


def display_spectrogram(encoder: nn.Module, audio: Tensor) -> tuple[Tensor, float, bool]:
    """The spectrogram a gallery draws a clip on: the encoder's own normalised log-mel when it has one
    (``log_mel`` and ``frame_seconds``: the activations then share its frames), else the display front end
    (:meth:`LogMelSpectrogram.for_display`). Returns (``[B, mels, frames]`` low frequencies first, seconds per
    frame, whether it is the encoder's own front end)."""
    with torch.inference_mode():
        if callable(getattr(encoder, "log_mel", None)) and getattr(encoder, "frame_seconds", None):
            return encoder.log_mel(audio)[:, 0].float().cpu(), float(encoder.frame_seconds), True
        front = LogMelSpectrogram.for_display(int(encoder.sample_rate)).to(audio.device)
        return front(audio)[:, 0].float().cpu(), front.hop_length / front.sample_rate, False
