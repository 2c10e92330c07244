"""Each neuron's top-K clips (analysis/top_clips.py) against brute force: scores, the order (score
descending, ties by dataset index), the peak's frame and band, exact merging of parts, and the file-level
merge beside the statistics merge."""

from __future__ import annotations

import math
from typing import Optional

import pytest
import torch
from torch import Tensor

from analysis import activation_stats as S
from analysis import top_clips as T
from lightning_modules.encoders import CrepeEncoder, M2DEncoder
from _counting import ToyEncoder, hooked_batches, record_sites, toy_data
from _top_clips import brute_top


def run_top(
    enc,
    audio: Tensor,
    lengths: Tensor,
    labels: Tensor,
    tokens: str,
    batch_size: int,
    k: int,
    index: Optional[Tensor] = None,
    counted_clips: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """The production path: hooks -> accumulate_call (peaks) -> update_top, batch by batch."""
    index = torch.arange(audio.shape[0]) if index is None else index
    top = T.new_top(len(enc.site_neurons), max(enc.site_neurons), k)
    n_bands = int(getattr(enc, "n_bands", 0) or 0)
    n_max = max(enc.site_neurons)
    for sl, bufs in hooked_batches(enc, audio, lengths, tokens, batch_size, peaks=True):
        cand = S.labels_to_multihot(labels[sl], 3).any(1)
        if counted_clips is not None:
            cand &= counted_clips[sl]
        T.update_top(
            top,
            T.stack_sites([S.clip_means(b) for b in bufs], n_max, float("nan")),
            index[sl],
            cand,
            T.stack_sites([b["peak_key"] for b in bufs], n_max, -1),
            n_bands,
        )
    return top


def _check(got: dict, ref: dict) -> None:
    assert torch.equal(got["index"], ref["index"])
    assert torch.allclose(got["score"], ref["score"], rtol=1e-5, atol=1e-6)
    assert torch.equal(got["frame"], ref["frame"]) and torch.equal(got["band"], ref["band"])


@pytest.mark.parametrize("stack_chunks", [True, False])
@pytest.mark.parametrize("tokens", ["all", "patches"])
def test_top_clips_match_brute_force(stack_chunks: bool, tokens: str) -> None:
    """Clips cut into chunks (several rows of one call, or one call per chunk), padding and CLS; K = 3 of 9
    clips; batching is irrelevant."""
    enc = ToyEncoder(stack_chunks=stack_chunks).eval()
    audio, lengths, labels = toy_data(n=9)
    index = torch.tensor([40, 3, 17, 8, 99, 1, 23, 5, 60])
    ref = brute_top(
        record_sites(enc, audio, lengths), 9, tokens, enc.site_neurons, 3, index, torch.ones(9, dtype=torch.bool)
    )
    for bs in (2, 9):
        _check(run_top(enc, audio, lengths, labels, tokens, bs, 3, index), ref)
    got = run_top(enc, audio, lengths, labels, tokens, 4, 3, index)
    assert (got["score"][1, 4:] == -math.inf).all() and (got["index"][1, 4:] == -1).all()  # ragged site
    assert (got["score"][:, :, :-1] >= got["score"][:, :, 1:]).all()  # descending


def test_candidates_are_the_counted_clips_and_short_lists_stay_empty() -> None:
    enc = ToyEncoder().eval()
    audio, lengths, labels = toy_data(n=6)
    counted = torch.tensor([True, False, True, False, False, True])
    got = run_top(enc, audio, lengths, labels, "all", 4, 5, counted_clips=counted)
    ref = brute_top(record_sites(enc, audio, lengths), 6, "all", enc.site_neurons, 5, torch.arange(6), counted)
    _check(got, ref)
    assert set(got["index"][0, 0].tolist()) == {0, 2, 5, -1}  # 3 candidates, 2 empty slots
    assert (got["frame"][0, 0, 3:] == -1).all()


def test_ties_go_to_the_lower_dataset_index_and_merging_parts_is_exact() -> None:
    """The order is total, so the top K of the whole is the merge of the parts' top K (any partition)."""
    score = torch.tensor([[2.0, 5.0, 5.0, 1.0, 5.0, 3.0]])
    index = torch.tensor([7, 9, 2, 4, 6, 0])
    whole = T.new_top(1, 1, 3)
    T.update_top(whole, score[:, :, None], index, torch.ones(6, dtype=torch.bool))
    assert whole["index"][0, 0].tolist() == [2, 6, 9]
    parts = []
    for sl in (slice(0, 2), slice(2, 5), slice(5, 6)):
        t = T.new_top(1, 1, 3)
        T.update_top(t, score[:, sl, None], index[sl], torch.ones(sl.stop - sl.start, dtype=torch.bool))
        parts.append(t)
    merged = T.merge_top(T.merge_top(parts[2], parts[0]), parts[1])
    assert torch.equal(merged["index"], whole["index"]) and torch.equal(merged["score"], whole["score"])
    stacked = {k: torch.stack([p[k] for p in parts]) for k in T.TOP_KEYS}  # as strategy.all_gather gives
    assert torch.equal(T.merge_gathered(stacked)["index"], whole["index"])


def test_runs_on_parts_merge_to_the_run_on_the_whole() -> None:
    enc = ToyEncoder().eval()
    audio, lengths, labels = toy_data(n=8)
    whole = run_top(enc, audio, lengths, labels, "all", 4, 3)
    a = run_top(enc, audio[:5], lengths[:5], labels[:5], "all", 4, 3)
    b = run_top(enc, audio[5:], lengths[5:], labels[5:], "all", 4, 3, index=torch.arange(5, 8))
    meta = dict(
        sites=enc.neuron_sites, site_neurons=enc.site_neurons, k=3, frame_seconds=None, frames_per_position=1, n_bands=0
    )
    m = S.merge_top_clips({**a, **meta}, {**b, **meta})
    assert torch.equal(m["index"], whole["index"]) and torch.equal(m["frame"], whole["frame"])
    assert torch.allclose(m["score"], whole["score"]) and m["k"] == 3
    with pytest.raises(ValueError, match="sites"):
        S.merge_top_clips({**a, **meta}, {**b, **meta, "sites": ["x", "y"]})


@pytest.mark.parametrize("tokens", ["patches", "all"])
def test_m2d_peaks_name_the_frame_and_band_of_the_largest_activation(tokens: str) -> None:
    """M2D tiny (patch tokens frequency-major, 32-frame chunks, padding chunks): the peak of a listed clip is
    the (first front-end frame, frequency band) of its largest activation, inside the clip; with
    ``tokens: all`` the CLS tokens count in the score but are never the peak (they have no frame)."""
    enc = M2DEncoder(
        width=64, depth=2, num_heads=4, mlp_ratio=4.0, input_frames=32, n_mels=80, patch=16, sample_rate=16000, seed=0
    ).eval()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(4, 17600, generator=g) * 0.1
    lengths = torch.tensor([17600, 5000, 9000, 12000])
    audio[torch.arange(17600)[None] >= lengths[:, None]] = 0
    labels = torch.tensor([0, 1, 2, 0])
    got = run_top(enc, audio, lengths, labels, tokens, 3, 2)
    ref = brute_top(
        record_sites(enc, audio, lengths),
        4,
        tokens,
        enc.site_neurons,
        2,
        torch.arange(4),
        torch.ones(4, dtype=torch.bool),
    )
    _check(got, ref)
    assert got["band"].min() >= 0 and got["band"].max() < enc.n_bands  # every peak is a patch with a band
    frames_of = 1 + lengths // enc.frontend.hop_length
    last = frames_of[got["index"].clamp_min(0)]
    assert (got["frame"] < last).all()  # never in a clip's padding


def test_crepe_peaks_have_frames_and_no_band() -> None:
    enc = CrepeEncoder(capacity="tiny", pretrained=True, hop_ms=40.0).eval()
    t = torch.arange(4000) / 16000
    audio = torch.stack([torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 880.0)]) * 0.5
    lengths = torch.tensor([4000, 2500, 4000])
    audio[1, 2500:] = 0
    got = run_top(enc, audio, lengths, torch.tensor([0, 1, 2]), "all", 2, 2)
    ref = brute_top(
        record_sites(enc, audio, lengths),
        3,
        "all",
        list(enc.site_neurons),
        2,
        torch.arange(3),
        torch.ones(3, dtype=torch.bool),
    )
    _check(got, ref)
    listed = got["index"] >= 0
    assert (got["band"] == -1).all() and (got["frame"][listed] >= 0).all()


def _brute_peaks(act: Tensor, counted: Tensor) -> tuple[Tensor, Tensor]:
    """Per row and neuron, the largest counted activation and the first position holding it, by loops."""
    R, P, N = act.shape
    value = torch.full((R, N), -math.inf, dtype=torch.float64)
    position = torch.zeros(R, N, dtype=torch.long)
    for r in range(R):
        for n in range(N):
            for p in range(P):
                if bool(counted[r, p]) and float(act[r, p, n]) > float(value[r, n]):
                    value[r, n], position[r, n] = float(act[r, p, n]), p
    return value, position


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(3, 9, 5), (1, 1, 1), (4, 13, 1), (1, 6, 7), (2, 1, 4), (5, 40, 3)])
def test_row_peaks_are_the_first_largest_counted_activation(dtype: torch.dtype, shape: tuple[int, int, int]) -> None:
    """The max pool behind :func:`row_peaks` against loops, on values with many ties (the first position
    wins), masks with rows that count nothing, size-1 axes (where a channels-last view is ambiguous), four
    dtypes, a non-contiguous input, and a workspace reused at another shape."""
    g = torch.Generator().manual_seed(sum(shape))
    R, P, N = shape
    ws = T.Workspace()
    T.row_peaks(torch.zeros(2, 50, 8, dtype=dtype), torch.ones(2, 50, dtype=torch.bool), ws)  # grows the workspace
    for trial in range(3):
        act = torch.randint(-3, 4, (R, N, P), generator=g).to(dtype).transpose(1, 2)  # ties; [R, P, N] non-contiguous
        counted = torch.rand(R, P, generator=g) > 0.4
        counted[0] = trial != 1  # a row with nothing counted (trial 1), else a full row
        value, position = T.row_peaks(act, counted, ws)
        ref_value, ref_position = _brute_peaks(act, counted)
        assert value.dtype == dtype and position.dtype == torch.int64 and value.shape == position.shape == (R, N)
        assert torch.equal(value.double(), ref_value)
        has = counted.any(1)[:, None].expand(R, N)
        assert torch.equal(position[has], ref_position[has])
