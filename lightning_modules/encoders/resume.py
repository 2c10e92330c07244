"""Resuming a framed encoder's forward at a neuron site (the optional protocol of :mod:`.base`).

For encoders that run a stack of per-frame layers on ``R`` frame rows (CREPE, PESTO): layer ``i`` is
``pre_i`` (what comes before its site module), the site module ``neuron_sites[i]`` (an activation), then
``post_i`` (what comes after, e.g. BatchNorm + pool, or a residual sum with the layer's input).

* :meth:`FramedResume.forward_to` runs a batch up to the *input* of the site modules of ``sites`` (one
  pass, stopping at the latest) and returns a :class:`SiteState` per site: that input ``[R, ...]`` (the
  site's pre-ablation output is ``site_module(pre)``), the layer's carry (residual input) and the frame
  layout (clip, valid and frame index of each row).
* :meth:`FramedResume.forward_from` runs the state repeated ``repeats`` times along the clip axis (the
  rows of copy ``k`` are the clips ``k * B + b``, the layout of a forward on ``audio.repeat(k, 1)``) from
  the site module on: the site's forward hooks (the ablation mask) fire on the resumed activation, as do
  the hooks of every later site; the earlier sites do not run. Chunks of ``frame_batch_size`` rows are cut
  as in the full forward, so the result is that of ``forward(audio.repeat(repeats, 1), ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn


@dataclass
class SiteState:
    """A batch's forward stopped at the input of neuron site ``site``.

    Attributes:
        site: index into ``neuron_sites``.
        pre: ``[R, ...]`` input of the site module for every frame row of the batch.
        carry: ``[R, ...]`` what the layer adds after its site (residual input), or None.
        emb: ``[B, D]`` embedding sum over valid frames when the embedding layer lies before the site
            (the rest of the forward cannot change it), else None.
        clip, valid_rows, frame: ``[R]`` clip index, validity and frame index of each row.
        valid: ``[B, F]`` frame validity of the batch.
    """

    site: int
    pre: Tensor
    carry: Optional[Tensor]
    emb: Optional[Tensor]
    clip: Tensor
    valid_rows: Tensor
    frame: Tensor
    valid: Tensor


class FramedResume:
    """Mixin of :class:`~.base.AudioEncoder` subclasses with per-frame layers. The encoder provides
    ``frame_batch_size``, ``embedding_layer`` (1-based), ``_call``, ``_frame_rows(audio, lengths) -> (rows
    [R, ...], valid [B, F])``, ``_chunk_input(x)``, ``_layer_pre(i, x) -> (z, carry)``, ``_layer_post(i, a,
    carry)`` and ``_n_layers``."""

    supports_resume = True

    def _site(self, i: int) -> nn.Module:
        return self.get_submodule(self.neuron_sites[i])

    def _layout(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        rows, valid = self._frame_rows(audio, lengths)
        b, n_frames = valid.shape
        clip = torch.arange(b, device=audio.device).repeat_interleave(n_frames)
        frame = torch.arange(n_frames, device=audio.device).repeat(b)
        return rows, valid, clip, frame, valid.reshape(-1)

    def _add_emb(self, emb: Optional[Tensor], x: Tensor, vrows: Tensor, clip: Tensor, n_clips: int) -> Tensor:
        flat = x.flatten(1) * vrows[:, None].to(x.dtype)
        return (flat.new_zeros(n_clips, flat.shape[1]) if emb is None else emb).index_add(0, clip, flat)

    def forward_to(self, audio: Tensor, lengths: Optional[Tensor], sites: Sequence[int]) -> dict[int, SiteState]:
        """audio ``[B, S]`` → {site: its :class:`SiteState`} (the site hooks of the layers run do fire)."""
        sites = sorted({int(s) for s in sites})
        rows, valid, clip, frame, vrows = self._layout(audio, lengths)
        b, keep = valid.shape[0], self.embedding_layer - 1
        pre: dict[int, list[Tensor]] = {s: [] for s in sites}
        carry: dict[int, list[Tensor]] = {s: [] for s in sites}
        emb: dict[int, Optional[Tensor]] = {s: None for s in sites}
        try:
            for start in range(0, rows.shape[0], self.frame_batch_size):
                sl = slice(start, start + self.frame_batch_size)
                self._call = (clip[sl], vrows[sl], frame[sl])
                x = self._chunk_input(rows[sl])
                for i in range(sites[-1] + 1):
                    z, c = self._layer_pre(i, x)
                    if i in pre:
                        pre[i].append(z)
                        carry[i].append(c)
                    if i == sites[-1]:
                        break
                    x = self._layer_post(i, self._site(i)(z), c)
                    if i == keep:
                        for s in sites:
                            if s > keep:
                                emb[s] = self._add_emb(emb[s], x, vrows[sl], clip[sl], b)
        finally:
            self._call = None
        return {
            s: SiteState(
                s,
                torch.cat(pre[s]),
                None if carry[s][0] is None else torch.cat(carry[s]),
                emb[s],
                clip,
                vrows,
                frame,
                valid,
            )
            for s in sites
        }

    def forward_from(self, state: SiteState, repeats: int = 1) -> Tensor:
        """The embeddings ``[repeats * B, E]`` of the batch repeated ``repeats`` times, resumed at the
        state's site module."""
        b = state.valid.shape[0]
        valid = state.valid.repeat(repeats, 1)
        count = valid.sum(1, keepdim=True).clamp(min=1)
        if state.emb is not None:
            return state.emb.repeat(repeats, 1) / count.to(state.emb.dtype)
        r0 = state.pre.shape[0]
        total, keep, emb = r0 * repeats, self.embedding_layer - 1, None
        try:
            for start in range(0, total, self.frame_batch_size):
                idx = torch.arange(start, min(start + self.frame_batch_size, total), device=state.pre.device)
                src = idx % r0
                clip = state.clip[src] + torch.div(idx, r0, rounding_mode="floor") * b
                vrows = state.valid_rows[src]
                self._call = (clip, vrows, state.frame[src])
                z = state.pre[src]
                c = None if state.carry is None else state.carry[src]
                x = self._layer_post(state.site, self._site(state.site)(z), c)
                for i in range(state.site + 1, keep + 1):
                    z, c = self._layer_pre(i, x)
                    x = self._layer_post(i, self._site(i)(z), c)
                emb = self._add_emb(emb, x, vrows, clip, repeats * b)
        finally:
            self._call = None
        return emb / count.to(emb.dtype)
