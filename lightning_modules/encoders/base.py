"""The encoder protocol: what every audio encoder adapter declares so that statistics and ablation
hooks never special-case a model name.

An encoder is an ``nn.Module`` that

* declares facts: ``sample_rate`` (Hz), ``embed_dim`` (E), ``neuron_sites`` (ordered module paths,
  relative to the encoder, whose forward output holds post-activation neurons), ``channel_axis`` (the
  axis of a site output that indexes neurons: -1 for ViT MLP activations ``[R, P, N]``, 1 for conv
  feature maps ``[R, N, T, ...]``) and ``site_neurons`` (neurons per site, same order as the sites);
* maps audio ``[B, S]`` (float32, mono, at ``sample_rate``) to clip embeddings ``[B, E]``;
* describes, for the site call in progress, which clip each output row belongs to, which output
  positions are counted, and where in the clip each position lies (:class:`Positions`: front-end frame
  and, for patch tokens, frequency band; ``frame_seconds`` converts frames to seconds). Encoders that split a clip into chunks or frames (M2D
  chunks of 608 frames, CREPE frames of 1024 samples) run their sites several times per forward or on
  ``B * k`` rows; :meth:`AudioEncoder.positions` tells the hook how to attribute them.

Hooks (statistics, ablation) are registered on ``encoder.get_submodule(site)``; they call
:func:`site_view` to get activations as ``[R, P, N]`` (rows, positions, neurons) and
``encoder.positions(site, output)`` to get the bookkeeping for that call.

Optional: resuming the forward at a site (``supports_resume = True``; CREPE and PESTO, through
:class:`.resume.FramedResume`). ``forward_to(audio, lengths, sites)`` runs a batch up to the input of the
site modules ``neuron_sites[s]`` for ``s`` in ``sites`` and returns a state per site (that input, i.e. the
site's output before any hook, plus what the rest of the forward needs: residual input, frame layout,
lengths); ``forward_from(state, repeats)`` returns the embeddings ``[repeats * B, E]`` of the batch
repeated ``repeats`` times along dim 0 (clip ``k * B + b`` = copy ``k`` of clip ``b``), running the site
module itself (so its forward hooks, e.g. an ablation mask, apply to the resumed activation) and every
later layer. The ablation callback uses it to share the forward before a pass's earliest ablated site;
encoders without it run the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn


@dataclass
class Positions:
    """Bookkeeping of one site call whose activations are viewed as ``[R, P, N]``.

    Attributes:
        clip: LongTensor ``[R]``: index (within the batch given to ``forward``) of the clip each row
            belongs to.
        valid: BoolTensor ``[R, P]``: True where the position holds input (False for positions made
            only of padding: they are never counted).
        special: BoolTensor ``[P]``: True for non-patch tokens such as CLS (counted under
            ``tokens='all'``, excluded under ``tokens='patches'``).
        frame: LongTensor ``[R, P]`` or None: the first front-end frame of the clip that the position
            covers (it spans ``encoder.frames_per_position`` frames of ``encoder.frame_seconds`` each);
            -1 for positions without a place in time (CLS). None: unknown (the position index is used).
        band: LongTensor ``[P]`` or None: frequency band of each position (patch tokens of a
            spectrogram ViT: band ``f`` of ``encoder.n_bands``); -1 for positions without one; None when
            the site has no frequency axis.
    """

    clip: Tensor
    valid: Tensor
    special: Tensor
    frame: Optional[Tensor] = None
    band: Optional[Tensor] = None

    def counted(self, tokens: str = "all") -> Tensor:
        """BoolTensor ``[R, P]`` of the positions counted under token policy ``tokens``."""
        if tokens == "all":
            return self.valid
        if tokens == "patches":
            return self.valid & ~self.special.to(self.valid.device)[None, :]
        raise ValueError(f"Unknown token policy {tokens!r}; expected 'all' or 'patches'")

    def frames(self) -> Tensor:
        """LongTensor ``[R, P]``: :attr:`frame`, or the position index when the encoder gives none."""
        if self.frame is not None:
            return self.frame
        r, p = self.valid.shape
        return torch.arange(p, device=self.valid.device).expand(r, p)


def patch_coordinates(first_frames: Tensor, freq_patches: int, rows: int, n_prefix: int) -> dict[str, Tensor]:
    """``frame`` ``[rows, n_prefix + F*t]`` and ``band`` ``[n_prefix + F*t]`` of a spectrogram ViT's tokens:
    ``n_prefix`` special tokens (CLS, registers: frame and band -1), then patch tokens frequency-major
    (token ``f * t + k`` = band ``f``, time patch ``k`` starting at frame ``first_frames[k]``)."""
    t = first_frames.shape[0]
    dev = first_frames.device
    none = torch.full((n_prefix,), -1, dtype=torch.long, device=dev)
    frame = torch.cat([none, first_frames.long().repeat(freq_patches)])
    band = torch.cat([none, torch.arange(freq_patches, device=dev).repeat_interleave(t)])
    return {"frame": frame.expand(rows, -1), "band": band}


def site_view(output: Tensor, channel_axis: int) -> Tensor:
    """View a site output as ``[R, P, N]``: rows, positions (all non-channel axes after the first,
    flattened), neurons. For a ViT ``[R, P, N]`` this is the identity; for a conv map ``[R, N, T, W]``
    it is ``[R, T*W, N]``. For ``[R, N]`` outputs P = 1."""
    x = output.movedim(channel_axis, -1)
    if x.dim() == 2:
        return x[:, None, :]
    return x.flatten(1, -2)


class AudioEncoder(nn.Module):
    """Base class of encoder adapters (see module docstring).

    Subclasses set ``sample_rate``, ``embed_dim``, ``neuron_sites``, ``channel_axis``,
    ``site_neurons`` and ``name`` (used for output folder suffixes), implement ``forward`` and, when
    rows or positions of a site output are not one-to-one with clips, keep ``self._positions``
    up to date during ``forward`` (a :class:`Positions` per call) or override :meth:`positions`.
    """

    sample_rate: int = 16000
    embed_dim: int = 0
    neuron_sites: list[str] = []
    channel_axis: int = -1
    site_neurons: list[int] = []
    name: str = "encoder"
    #: Seconds per front-end frame (the unit of :attr:`Positions.frame`); None = unknown.
    frame_seconds: Optional[float] = None
    #: Front-end frames one position spans (a 16-frame patch: 16).
    frames_per_position: int = 1
    #: Frequency bands of the positions (patch rows of a spectrogram ViT); 0 = no frequency axis.
    n_bands: int = 0

    def __init__(self) -> None:
        super().__init__()
        self._positions: Optional[Positions] = None
        self._lengths: Optional[Tensor] = None

    # -- bookkeeping -------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Positions of the site call in progress. Default: row r is clip r, every position holds
        input, none is special. Encoders that chunk or frame their input set ``self._positions``
        before running their sites (it must match ``site_view(output).shape[:2]``)."""
        view_shape = site_view(output, self.channel_axis).shape
        if self._positions is not None and tuple(self._positions.valid.shape) == tuple(view_shape[:2]):
            return self._positions
        r, p = view_shape[0], view_shape[1]
        dev = output.device
        return Positions(
            clip=torch.arange(r, device=dev),
            valid=torch.ones(r, p, dtype=torch.bool, device=dev),
            special=torch.zeros(p, dtype=torch.bool, device=dev),
        )

    #: True when :meth:`forward_to` / :meth:`forward_from` are implemented (module docstring).
    supports_resume: bool = False

    def forward_to(self, audio: Tensor, lengths: Optional[Tensor], sites: list[int]) -> dict:  # pragma: no cover
        """{site index: state} of the forward stopped at the input of each site module (optional)."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume its forward at a site")

    def forward_from(self, state, repeats: int = 1) -> Tensor:  # pragma: no cover
        """Embeddings ``[repeats * B, E]`` of the state's batch repeated ``repeats`` times (optional)."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume its forward at a site")

    def site_module(self, site: str) -> nn.Module:
        return self.get_submodule(site)

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:  # pragma: no cover
        """audio ``[B, S]`` float32 at ``sample_rate``; ``lengths`` ``[B]`` valid samples per clip
        (the rest is right zero-padding) or None (all valid). Returns embeddings ``[B, E]``."""
        raise NotImplementedError
