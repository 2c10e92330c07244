"""The counting maths of the activation statistics (analysis/activation_stats.py) against brute force on the
toy encoder (:mod:`_counting`): counts at both levels and token policies, what is never counted, splits
and batching, merging, labels and policies, optional sums.
"""

from __future__ import annotations

import pytest
import torch

from _counting import ToyEncoder, brute_force, record_sites, run_core, toy_data
from analysis import activation_stats as S


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
