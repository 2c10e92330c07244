"""Functional core of the activation statistics (analysis/activation_stats.py) against brute force.

``ToyEncoder`` implements the encoder protocol with chunking (several chunks of a clip as rows of one
site call, or one site call per chunk), padding-only positions, a special (CLS) token and ragged sites,
and records every activation it produces so the counts can be recomputed by brute force.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import pytest
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


@pytest.mark.parametrize("stack_chunks", [True, False])
@pytest.mark.parametrize("tokens", ["all", "patches"])
@pytest.mark.parametrize("multilabel", [False, True])
def test_counts_match_brute_force(stack_chunks: bool, tokens: str, multilabel: bool) -> None:
    enc = ToyEncoder(stack_chunks=stack_chunks).eval()
    audio, lengths, labels = toy_data(multilabel=multilabel)  # 40 samples → 3 chunks of 16, last padded
    got = run_core(enc, audio, lengths, labels, 3, tokens, "clip", batch_size=3)
    enc.record = []
    with torch.inference_mode():
        enc(audio, lengths)
    ref = brute_force(enc.record, labels, 3, tokens, enc.site_neurons)
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert got[key].dtype == torch.int64
        assert torch.equal(got[key], ref[key]), key
    assert torch.allclose(got["act_sum"], ref["act_sum"], rtol=1e-5, atol=1e-5)
    assert torch.allclose(got["rate_sum"], ref["rate_sum"], rtol=1e-9, atol=1e-12)
    # ragged: neurons past site 1's width never counted
    assert got["count"][1, 4:].sum() == 0
    # over_zero, both levels
    oz = S.over_zero(got, enc.site_neurons, "token")
    assert oz.dtype == torch.float32 and oz.shape == (2, 6, 3)
    assert torch.isnan(oz[1, 4:]).all() and not torch.isnan(oz[0]).any() and not torch.isnan(oz[1, :4]).any()
    assert torch.allclose(oz[0], (ref["count"][0].double() / ref["n_tokens_site"][0].double()).float())
    ozc = S.over_zero(got, enc.site_neurons, "clip")
    assert torch.allclose(ozc[1, :4], (ref["rate_sum"][1, :4] / ref["n_clips"].double()).float())
    assert torch.isnan(ozc[1, 4:]).all()


def test_patches_excludes_cls_and_padding_never_counted() -> None:
    enc = ToyEncoder().eval()
    audio, lengths, labels = toy_data()
    a = run_core(enc, audio, lengths, labels, 3, "all", "token", batch_size=7)
    p = run_core(enc, audio, lengths, labels, 3, "patches", "token", batch_size=7)
    # Expected counted positions per clip from the lengths alone (chunk 16, tokens of 4, 3 chunks)
    tok = torch.ceil(lengths / 4).long()  # valid patch tokens
    chunks_with_input = torch.ceil(lengths / 16).long()  # CLS counted only in chunks holding input
    for c in range(3):
        sel = labels == c
        for l in range(2):
            assert int(p["n_tokens_site"][l, c]) == int(tok[sel].sum())
            assert int(a["n_tokens_site"][l, c]) == int((tok + chunks_with_input)[sel].sum())
    assert "rate_sum" not in a


def test_splits_restrict_counted_clips_and_batching_is_irrelevant() -> None:
    enc = ToyEncoder().eval()
    audio, lengths, labels = toy_data(n=9)
    counted = torch.tensor([True, False, True, True, False, False, True, True, False])
    got1 = run_core(enc, audio, lengths, labels, 3, "all", "clip", batch_size=2, counted_clips=counted)
    got2 = run_core(enc, audio, lengths, labels, 3, "all", "clip", batch_size=9, counted_clips=counted)
    enc.record = []
    with torch.inference_mode():
        enc(audio, lengths)
    ref = brute_force(enc.record, labels, 3, "all", enc.site_neurons, counted_clips=counted)
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(got1[key], ref[key]) and torch.equal(got2[key], ref[key]), key
    assert int(got1["n_clips"].sum()) == int(counted.sum())


def test_merge_is_exact_sum_and_checks_metadata() -> None:
    enc = ToyEncoder().eval()
    audio, lengths, labels = toy_data(n=8)
    whole = run_core(enc, audio, lengths, labels, 3, "all", "clip", batch_size=4)
    a = run_core(enc, audio[:5], lengths[:5], labels[:5], 3, "all", "clip", batch_size=4)
    b = run_core(enc, audio[5:], lengths[5:], labels[5:], 3, "all", "clip", batch_size=4)
    meta = dict(sites=enc.neuron_sites, classes=["a", "b", "c"], tokens="all", level="clip")
    m = S.merge_stats({**a, **meta}, {**b, **meta})
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(m[key], whole[key]), key
    assert torch.allclose(m["rate_sum"], whole["rate_sum"])
    with pytest.raises(ValueError, match="tokens"):
        S.merge_stats({**a, **meta}, {**b, **meta, "tokens": "patches"})


def test_labels_to_multihot_and_bad_policy() -> None:
    assert S.labels_to_multihot(torch.tensor([2, 0]), 3).tolist() == [[False, False, True], [True, False, False]]
    assert S.labels_to_multihot(torch.tensor([[1.0, 0.0, 1.0]]), 3).tolist() == [[True, False, True]]
    # no read-back on the device: an index out of range is an empty row there, and check_labels (run on
    # the host copies of the rows) names the clip
    assert S.labels_to_multihot(torch.tensor([3, 1]), 3).tolist() == [[False, False, False], [False, True, False]]
    with pytest.raises(ValueError, match=r"out of range \[0, 3\): 3 \(clip with dataset index 17\)"):
        S.check_labels(torch.tensor([1, 3]), 3, torch.tensor([16, 17]))
    S.check_labels(torch.tensor([0, 2]), 3)
    with pytest.raises(ValueError, match="token policy"):
        S.check_policy("cls", "token")
    with pytest.raises(ValueError, match="level"):
        S.check_policy("all", "frame")


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


def _real_encoder_check(enc: AudioEncoder, audio: Tensor, lengths: Tensor, labels: Tensor, tokens: str) -> dict:
    got = run_core(enc, audio, lengths, labels, 3, tokens, "clip", batch_size=2)
    ref = brute_force(record_sites(enc, audio, lengths), labels, 3, tokens, list(enc.site_neurons))
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(got[key], ref[key]), key
    assert torch.allclose(got["act_sum"], ref["act_sum"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(got["rate_sum"], ref["rate_sum"], rtol=1e-9, atol=1e-12)
    return got


@pytest.mark.parametrize("tokens", ["all", "patches"])
def test_tiny_m2d_chunked_clip_matches_brute_force(tokens: str) -> None:
    from lightning_modules.encoders import M2DEncoder

    # 32-frame chunks: a 1.1 s clip (111 frames) spans 4 chunks; the shorter clips leave padding chunks.
    enc = M2DEncoder(
        width=64, depth=2, num_heads=4, mlp_ratio=4.0, input_frames=32, n_mels=80, patch=16, sample_rate=16000, seed=0
    ).eval()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(3, 17600, generator=g) * 0.1
    lengths = torch.tensor([17600, 5000, 9000])
    audio[torch.arange(17600)[None] >= lengths[:, None]] = 0
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # multi-label
    got = _real_encoder_check(enc, audio, lengths, labels, tokens)
    assert int(got["n_clips"].sum()) == 5 and int(got["n_tokens_site"][0].sum()) > 0


def test_crepe_tiny_frames_match_brute_force() -> None:
    from lightning_modules.encoders import CrepeEncoder

    enc = CrepeEncoder(capacity="tiny", pretrained=True, hop_ms=40.0).eval()
    t = torch.arange(4000) / 16000
    audio = torch.stack([torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 880.0)]) * 0.5
    lengths = torch.tensor([4000, 2500, 4000])
    audio[1, 2500:] = 0
    got = _real_encoder_check(enc, audio, lengths, torch.tensor([0, 1, 2]), "all")
    # ragged sites: 128 neurons in site 0, 16 in site 1 -> rows past 16 stay zero; different positions
    assert got["count"][1, 16:].sum() == 0 and got["n_tokens_site"][0, 0] != got["n_tokens_site"][1, 0]


@pytest.mark.parametrize("P", [1, 7, 255, 256, 600])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_positive_counts_equal_a_plain_count_at_every_length(P: int, dtype: torch.dtype) -> None:
    """Byte sums (slices of 255 positions beyond that) give exactly (act > 0) & counted summed in int64,
    NaN never counts, and the counts do not depend on the dtype's path."""
    g = torch.Generator().manual_seed(P)
    act = torch.randn(3, P, 5, generator=g).to(dtype)
    act[0, 0, 0] = float("nan")
    act[1, :, 2] = 1.0  # a neuron positive everywhere: the largest count a row can have
    counted = torch.rand(3, P, generator=g) > 0.3
    counted[1] = True
    got = S.positive_counts(act, counted)
    ref = ((act > 0) & counted[:, :, None]).sum(1)
    assert torch.equal(got.long(), ref)
    assert got[1, 2] == P


def test_sums_are_optional_and_fold_without_act_sum() -> None:
    enc = ToyEncoder().eval()
    audio, lengths, labels = toy_data()
    record = record_sites(enc, audio, lengths)
    totals = S.new_totals(enc.site_neurons, 3, "token", act_sum=False)
    assert "act_sum" not in totals
    bufs = [S.new_batch_buffer(7, n, sums=False) for n in enc.site_neurons]
    assert all("sum" not in b for b in bufs)
    for l, act, pos in record:
        S.accumulate_call(bufs[l], act, pos.counted("all"), pos.clip)
    S.fold_batch(totals, bufs, S.labels_to_multihot(labels, 3))
    ref = brute_force(record, labels, 3, "all", enc.site_neurons)
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(totals[key], ref[key]), key


def test_counting_never_reads_back_to_the_host() -> None:
    """The per-call and per-batch core functions run on the meta device, where any host read (``.item()``,
    ``bool()``, ``.cpu()``, ``.tolist()``, data-dependent shapes) raises: they work on any device without
    a synchronisation."""
    with pytest.raises(RuntimeError):
        torch.zeros(1, device="meta").item()  # what a host read on the meta device does
    L, B, R, P, N, C = 2, 3, 6, 300, 5, 4
    act = torch.empty(R, P, N, device="meta")
    counted = torch.empty(R, P, dtype=torch.bool, device="meta")
    clip = torch.empty(R, dtype=torch.long, device="meta")
    frames = torch.empty(R, P, dtype=torch.long, device="meta")
    band = torch.empty(P, dtype=torch.long, device="meta")
    totals = S.new_totals([N, N - 1], C, "clip", device="meta")
    bufs = [S.new_batch_buffer(B, n, "meta", sums=True, peaks=True) for n in (N, N - 1)]
    for l, buf in enumerate(bufs):
        S.accumulate_call(buf, act[..., : buf["pos"].shape[1]], counted, clip, frames, band, 5, T.Workspace())
    labels = torch.empty(B, dtype=torch.long, device="meta")
    classes = S.labels_to_multihot(labels, C)
    keep = torch.empty(B, dtype=torch.bool, device="meta")
    S.fold_batch(totals, bufs, classes, keep)
    top = T.new_top(L, N, 4, "meta")
    T.update_top(
        top,
        T.stack_sites([S.clip_means(b) for b in bufs], N, float("nan")),
        torch.empty(B, dtype=torch.long, device="meta"),
        classes.any(1) & keep,
        T.stack_sites([b["peak_key"] for b in bufs], N, -1),
        5,
    )
    assert all(t.device.type == "meta" for t in list(totals.values()) + list(top.values()))


@pytest.mark.slow
def test_compiled_kernel_counts_exactly_like_the_eager_ones() -> None:
    """``compile: true``: one torch.compile-d kernel per site call; the same integer counts, the same
    peaks, sums to round-off (M2D tiny with padding chunks and CLS, both token policies)."""
    from lightning_modules.encoders import M2DEncoder

    enc = M2DEncoder(
        width=64, depth=2, num_heads=4, mlp_ratio=4.0, input_frames=32, n_mels=80, patch=16, sample_rate=16000, seed=0
    ).eval()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(3, 17600, generator=g) * 0.1
    lengths = torch.tensor([17600, 5000, 9000])
    for l, act, pos in record_sites(enc, audio, lengths):
        for tokens in ("all", "patches"):
            out = {}
            for compiled in (False, True):
                buf = S.new_batch_buffer(3, act.shape[-1], sums=True, peaks=True)
                S.accumulate_call(
                    buf, act, pos.counted(tokens), pos.clip, pos.frames(), pos.band, enc.n_bands, compiled=compiled
                )
                out[compiled] = buf
            for key in ("pos", "n", "peak", "peak_key"):
                assert torch.equal(out[False][key], out[True][key]), key
            assert torch.allclose(out[False]["sum"], out[True]["sum"], rtol=1e-5, atol=1e-5)
