"""Test helper: the oracle of the activation statistics (:mod:`analysis.activation_stats`).

``ToyEncoder`` implements the encoder protocol with chunking (several chunks of a clip as rows of one
site call, or one site call per chunk), padding-only positions, a special (CLS) token and ragged sites,
and records every activation it produces so the counts can be recomputed by brute force
(:func:`brute_force`, explicit loops). :func:`run_core` / :func:`hooked_batches` drive the production path
(hooks → ``accumulate_call`` → ``fold_batch``); :func:`record_sites` keeps every site activation of a real
encoder, :func:`real_encoder_check` compares the two on it.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from analysis import activation_stats as S
from analysis import top_clips as T
from lightning_modules.encoders.base import AudioEncoder, Positions, site_view


class _Block(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


class ToyEncoder(AudioEncoder):
    """Tiny protocol encoder: clips cut into chunks of ``chunk`` samples, each chunk into tokens of
    ``tok`` samples, a CLS token per chunk, two blocks with 6 and 4 hidden neurons (ragged sites)."""

    sample_rate = 16000
    embed_dim = 8
    neuron_sites = ["blocks.0.act", "blocks.1.act"]
    channel_axis = -1
    site_neurons = [6, 4]
    name = "toy"

    def __init__(self, chunk: int = 16, tok: int = 4, stack_chunks: bool = True, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.chunk, self.tok, self.stack_chunks = chunk, tok, stack_chunks
        self.inp = nn.Linear(tok, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.blocks = nn.ModuleList([_Block(8, 6), _Block(8, 4)])
        self.record: Optional[list] = None  # (site index, act [R, P, N], Positions) when not None

    def _run(self, x: Tensor, clip: Tensor, valid_tok: Tensor) -> Tensor:
        """x [R, T, tok] → tokens [R, 1 + T, 8]; valid_tok [R, T]."""
        h = torch.cat([self.cls.expand(x.shape[0], 1, 8), self.inp(x)], 1)
        valid = torch.cat([valid_tok.any(1, keepdim=True), valid_tok], 1)
        special = torch.zeros(valid.shape[1], dtype=torch.bool)
        special[0] = True
        self._positions = Positions(clip=clip, valid=valid, special=special)
        for l, blk in enumerate(self.blocks):
            if self.record is not None:
                a = blk.act(blk.fc1(h))
                self.record.append((l, a.detach().clone(), self._positions))
            h = blk(h)
        self._positions = None
        return h

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        b, s = audio.shape
        lengths = torch.full((b,), s) if lengths is None else lengths
        k = max(1, math.ceil(s / self.chunk))
        x = nn.functional.pad(audio, (0, k * self.chunk - s)).reshape(b, k, self.chunk // self.tok, self.tok)
        t = self.chunk // self.tok
        start = torch.arange(k)[:, None] * self.chunk + torch.arange(t)[None, :] * self.tok  # [k, T]
        valid = start[None] < lengths[:, None, None]  # [B, k, T]
        if self.stack_chunks:  # rows = clip-major (B·k rows), one call
            h = self._run(
                x.reshape(b * k, t, self.tok), torch.arange(b).repeat_interleave(k), valid.reshape(b * k, t)
            ).reshape(b, k, 1 + t, 8)
        else:  # one site call per chunk
            h = torch.stack([self._run(x[:, i], torch.arange(b), valid[:, i]) for i in range(k)], 1)
        w = torch.cat([valid.any(2, keepdim=True), valid], 2).float()[..., None]  # [B, k, 1+T, 1]
        return (h * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)


def brute_force(
    record: list,
    labels: Tensor,
    n_classes: int,
    tokens: str,
    site_neurons: list[int],
    counted_clips: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """Counts by explicit loops over rows, positions and classes from every kept activation."""
    L, N, C = len(site_neurons), max(site_neurons), n_classes
    B = labels.shape[0]
    multi = labels.dim() == 2
    cls_of = [[c for c in range(C) if (labels[b, c] > 0.5 if multi else int(labels[b]) == c)] for b in range(B)]
    if counted_clips is not None:
        cls_of = [cs if bool(counted_clips[b]) else [] for b, cs in enumerate(cls_of)]
    count = torch.zeros(L, N, C, dtype=torch.int64)
    n_tokens_site = torch.zeros(L, C, dtype=torch.int64)
    clip_pos = torch.zeros(L, B, N, dtype=torch.int64)
    clip_n = torch.zeros(L, B, dtype=torch.int64)
    act_sum = torch.zeros(L, N, dtype=torch.float64)
    n_positions = torch.zeros(L, dtype=torch.int64)
    for l, act, pos in record:
        n = act.shape[-1]
        for r in range(act.shape[0]):
            b = int(pos.clip[r])
            keep = [
                p
                for p in range(act.shape[1])
                if bool(pos.valid[r, p]) and not (tokens == "patches" and bool(pos.special[p]))
            ]
            if not keep:
                continue
            a = act[r, keep].double()  # [kept positions, n]
            on = (a > 0).long().sum(0)
            clip_pos[l, b, :n] += on
            clip_n[l, b] += len(keep)
            if cls_of[b]:
                act_sum[l, :n] += a.sum(0)
                n_positions[l] += len(keep)
            for c in cls_of[b]:
                count[l, :n, c] += on
                n_tokens_site[l, c] += len(keep)
    n_clips = torch.zeros(C, dtype=torch.int64)
    rate_sum = torch.zeros(L, N, C, dtype=torch.float64)
    for b in range(B):
        for c in cls_of[b]:
            n_clips[c] += 1
            for l in range(L):
                if clip_n[l, b] > 0:
                    rate_sum[l, :, c] += clip_pos[l, b].double() / float(clip_n[l, b])
    return dict(
        count=count,
        n_tokens_site=n_tokens_site,
        n_tokens=n_tokens_site[0].clone(),
        n_clips=n_clips,
        act_sum=act_sum,
        n_positions=n_positions,
        rate_sum=rate_sum,
    )


def hooked_batches(
    enc, audio: Tensor, lengths: Tensor, tokens: str, batch_size: int, peaks: bool = False
) -> Iterator[tuple[slice, list[dict[str, Tensor]]]]:
    """The production hot path: hooks on every site call ``accumulate_call`` (with the peak search when
    ``peaks``); yields each batch's slice and its per-site buffers after the forward. Hooks removed at the end."""
    n_bands = int(getattr(enc, "n_bands", 0) or 0)
    bufs: list = []
    ws = T.Workspace()

    def make(l: int, site: str):
        def hook(m, i, out):
            pos = enc.positions(site, out)
            S.accumulate_call(
                bufs[l],
                site_view(out, enc.channel_axis),
                pos.counted(tokens),
                pos.clip,
                *((pos.frames(), pos.band, n_bands, ws) if peaks else ()),
            )

        return hook

    hs = [enc.get_submodule(s).register_forward_hook(make(l, s)) for l, s in enumerate(enc.neuron_sites)]
    try:
        for i in range(0, audio.shape[0], batch_size):
            sl = slice(i, i + batch_size)
            nb = audio[sl].shape[0]
            bufs[:] = [S.new_batch_buffer(nb, n, peaks=peaks) for n in enc.site_neurons]
            with torch.inference_mode():
                enc(audio[sl], lengths[sl])
            yield sl, bufs
    finally:
        for h in hs:
            h.remove()


def run_core(
    enc: ToyEncoder,
    audio: Tensor,
    lengths: Tensor,
    labels: Tensor,
    n_classes: int,
    tokens: str,
    level: str,
    batch_size: int,
    counted_clips: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """The production path: hooks → accumulate_call → fold_batch, batch by batch."""
    totals = S.new_totals(enc.site_neurons, n_classes, level)
    for sl, bufs in hooked_batches(enc, audio, lengths, tokens, batch_size):
        S.fold_batch(
            totals,
            bufs,
            S.labels_to_multihot(labels[sl], n_classes),
            None if counted_clips is None else counted_clips[sl],
        )
    return totals


def toy_data(n: int = 7, s: int = 40, n_classes: int = 3, multilabel: bool = False, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(n, s, generator=g)
    lengths = torch.randint(5, s + 1, (n,), generator=g)
    lengths[0] = s
    audio[torch.arange(s)[None, :] >= lengths[:, None]] = 0.0
    if multilabel:
        labels = (torch.rand(n, n_classes, generator=g) > 0.5).float()
        labels[0] = 1.0  # every class present
        labels[1, :] = 0.0
        labels[1, 0] = 1.0
    else:
        labels = torch.arange(n) % n_classes
    return audio, lengths, labels


def record_sites(enc: AudioEncoder, audio: Tensor, lengths: Tensor) -> list:
    """Run ``enc`` once keeping every site activation ``[R, P, N]`` with its Positions."""
    record: list = []

    def make(l: int, site: str):
        def hook(m, i, out):
            record.append((l, site_view(out, enc.channel_axis).detach().clone(), enc.positions(site, out)))

        return hook

    hs = [enc.get_submodule(s).register_forward_hook(make(l, s)) for l, s in enumerate(enc.neuron_sites)]
    try:
        with torch.inference_mode():
            enc(audio, lengths)
    finally:
        for h in hs:
            h.remove()
    return record


def real_encoder_check(enc: AudioEncoder, audio: Tensor, lengths: Tensor, labels: Tensor, tokens: str) -> dict:
    got = run_core(enc, audio, lengths, labels, 3, tokens, "clip", batch_size=2)
    ref = brute_force(record_sites(enc, audio, lengths), labels, 3, tokens, list(enc.site_neurons))
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(got[key], ref[key]), key
    assert torch.allclose(got["act_sum"], ref["act_sum"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(got["rate_sum"], ref["rate_sum"], rtol=1e-9, atol=1e-12)
    return got
