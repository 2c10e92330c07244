"""The counting kernel of the activation statistics (analysis/activation_stats.py): positive counts by byte sums
at every length and dtype, no read-back to the host in the per-call and per-batch functions (meta device),
and the compiled kernel counting exactly like the eager one.
"""

from __future__ import annotations

import pytest
import torch

from _counting import record_sites
from analysis import activation_stats as S
from analysis import top_clips as T


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
