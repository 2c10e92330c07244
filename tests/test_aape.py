"""AAPE selection: LAPE oracle parity, defect fixes, NaN (absent) neurons, per-task top_rate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from analysis.aape import (
    SaturationWarning,
    activation_probability,
    default_top_rate,
    entropy,
    identify,
    normalise,
    resolve_top_rate,
    select_neurons,
)

REPO = Path(__file__).resolve().parents[1]


def lape_oracle(
    counts: torch.Tensor, n: torch.Tensor, top_rate: float, filter_rate: float, bar_ratio: float
) -> list[list[torch.Tensor]]:
    """Independent step-by-step re-implementation of LAPE identify.py's ``activation()`` (the oracle).

    Follows the reference statement by statement: probabilities, class-normalisation with NaN → 0,
    entropy with 0·log0 = 0, kthvalue filter bar, +inf entropy for filtered neurons, topk of the smallest
    entropies, kthvalue activation bar, torch.where over [class, selected], split by bincount of the
    class ids, per class a sorted (layer, neuron) list bucketed per layer.
    """
    n_layers, n_inter, _ = counts.size()
    probs = counts / n
    normed = probs / probs.sum(dim=-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    logs = torch.where(normed > 0, normed.log(), 0)
    ent = -torch.sum(normed * logs, dim=-1)
    assert not torch.isnan(ent).any()
    flat_p = probs.flatten()
    bar_f = flat_p.kthvalue(round(len(flat_p) * filter_rate)).values.item()
    ent[(probs > bar_f).sum(dim=-1) == 0] = torch.inf
    flat_h = ent.flatten()
    _, idx = flat_h.topk(round(len(flat_h) * top_rate), largest=False)
    rows = idx // ent.size(1)
    cols = idx % ent.size(1)
    sel_p = probs[rows, cols].transpose(0, 1)  # [C, K]
    bar_a = flat_p.kthvalue(round(len(flat_p) * bar_ratio)).values.item()
    cls_ids, pos = torch.where(sel_p > bar_a)
    pairs = torch.stack((rows, cols), dim=-1)
    result = []
    for chunk in pos.split(torch.bincount(cls_ids).tolist()):
        members = sorted(tuple(r.tolist()) for r in pairs[chunk])
        per_layer: list[list[int]] = [[] for _ in range(n_layers)]
        for layer, neuron in members:
            per_layer[layer].append(neuron)
        result.append([torch.tensor(v).long() for v in per_layer])
    return result


def _assert_same(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for ca, cb in zip(a, b):
        assert len(ca) == len(cb)
        for ta, tb in zip(ca, cb):
            assert ta.dtype == tb.dtype == torch.int64
            assert torch.equal(ta, tb), (ta, tb)


CASES = [
    # (L, N, C, max_count, n_tokens, top_rate, filter_rate, bar_ratio, seed)
    (2, 16, 3, 20, 20, 0.1, 0.95, 0.95, 0),  # heavy ties (coarse counts)
    (4, 50, 7, 1000, 1000, 0.01, 0.95, 0.95, 1),
    (3, 200, 10, 5, 5, 0.05, 0.95, 0.80, 2),  # lower bar -> many multi-class neurons
    (12, 64, 50, 300, 300, 0.02, 0.95, 0.95, 3),
    (2, 30, 4, 10, 10, 0.5, 0.99, 0.50, 4),  # fewer candidates than k: LAPE's topk takes +inf neurons
    (5, 40, 6, 50, 50, 0.03, 0.90, 0.99, 5),
]


@pytest.mark.parametrize("L,N,C,maxc,ntok,tr,fr,br,seed", CASES)
def test_lape_mode_matches_oracle(L, N, C, maxc, ntok, tr, fr, br, seed):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, maxc + 1, (L, N, C), generator=g)
    # uneven class sizes: scale counts so classes have different n_tokens
    n = torch.randint(ntok, 3 * ntok + 1, (C,), generator=g)
    counts = torch.minimum(counts * n // ntok, n)
    expected = lape_oracle(counts, n, tr, fr, br)
    got = select_neurons(
        activation_probability(counts, n), mode="lape", top_rate=tr, filter_rate=fr, activation_bar_ratio=br
    )
    _assert_same(got, expected)
    # the case design: make sure the interesting paths were exercised somewhere
    r = identify(activation_probability(counts, n), mode="lape", top_rate=tr, filter_rate=fr, activation_bar_ratio=br)
    assert r.n_selected == round(L * N * tr)


def test_oracle_cases_cover_multiclass_and_inf_selection():
    multi = inf_sel = False
    for L, N, C, maxc, ntok, tr, fr, br, seed in CASES:
        g = torch.Generator().manual_seed(seed)
        counts = torch.randint(0, maxc + 1, (L, N, C), generator=g)
        n = torch.randint(ntok, 3 * ntok + 1, (C,), generator=g)
        counts = torch.minimum(counts * n // ntok, n)
        r = identify(
            activation_probability(counts, n), mode="lape", top_rate=tr, filter_rate=fr, activation_bar_ratio=br
        )
        multi |= bool((r.assignments.sum(1) >= 2).any())
        inf_sel |= bool((~r.passes_filter[r.selected[:, 0], r.selected[:, 1]]).any())
    assert multi and inf_sel


def test_lape_mode_drops_trailing_empty_classes_like_bincount():
    # class 2 never exceeds anything; classes 0 and 1 have specific neurons
    p = torch.zeros(1, 20, 3)
    p[0, 0, 0] = 0.9
    p[0, 1, 1] = 0.8
    counts = (p * 100).round()
    n = torch.full((3,), 100)
    expected = lape_oracle(counts, n, 0.1, 0.9, 0.9)
    lape = select_neurons(counts / n, mode="lape", top_rate=0.1, filter_rate=0.9, activation_bar_ratio=0.9)
    _assert_same(lape, expected)
    assert len(lape) == 2  # LAPE drops class 2
    default = select_neurons(counts / n, top_rate=0.1, filter_rate=0.9, activation_bar_ratio=0.9)
    assert len(default) == 3  # default keeps it ...
    assert all(t.numel() == 0 for t in default[2])  # ... with zero neurons
    assert default[0][0].tolist() == [0] and default[1][0].tolist() == [1]


def test_default_keeps_middle_and_trailing_empty_classes():
    p = torch.zeros(2, 10, 4)
    p[0, 3, 1] = 0.7
    r = identify(p, top_rate=0.05, filter_rate=0.9, activation_bar_ratio=0.9)
    assert len(r.neurons) == 4
    sizes = [sum(t.numel() for t in c) for c in r.neurons]
    assert sizes == [0, 1, 0, 0]


def test_ties_broken_by_layer_then_neuron():
    # 20 identical neurons (same p row) tie on entropy; k = round(40 * 0.125) = 5
    p = torch.zeros(2, 20, 3)
    p[:, :, 0] = 0.9
    # shuffle which neurons are "identical" so index order != memory order of anything else
    p[0, :10] = torch.tensor([0.5, 0.5, 0.5])  # layer 0, first 10: flat distribution (high entropy)
    r = identify(p, top_rate=0.125, filter_rate=0.5, activation_bar_ratio=0.5)
    expected = [[0, n] for n in range(10, 15)]
    assert r.selected.tolist() == expected
    # deterministic and independent of repeated calls
    for _ in range(3):
        assert identify(p, top_rate=0.125, filter_rate=0.5, activation_bar_ratio=0.5).selected.tolist() == expected


def test_saturation_warns():
    p = torch.ones(2, 10, 3)
    p[0, 0] = torch.tensor([0.1, 0.2, 0.3])  # only 3 of 60 entries below the max
    with pytest.warns(SaturationWarning, match="saturates"):
        r = identify(p, top_rate=0.1)
    assert r.filter_bar == 1.0
    assert any("saturates" in w for w in r.warnings)
    assert all(t.numel() == 0 for c in r.neurons for t in c)
    # lape mode does not warn (it reproduces LAPE, which is silent)
    with _no_warning():
        identify(p, mode="lape", top_rate=0.1)


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self.rec = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        assert not [w for w in self.rec if issubclass(w.category, SaturationWarning)]


@pytest.mark.parametrize("mode", ["default", "lape"])
def test_nan_neurons_never_selected_and_excluded_from_quantiles(mode):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 12, 4, generator=g)
    site_neurons = [12, 5, 8]
    for l, n in enumerate(site_neurons):
        p[l, n:] = float("nan")
    n_present = sum(site_neurons)
    r = identify(p, mode=mode, top_rate=1.0, filter_rate=0.5, activation_bar_ratio=0.5)
    sel = r.selected.tolist()
    assert all(n < site_neurons[l] for l, n in sel)
    finite = p[~torch.isnan(p)]
    assert r.filter_bar == finite.kthvalue(round(finite.numel() * 0.5)).values.item()
    assert r.n_requested == n_present
    if mode == "lape":
        assert len(sel) == n_present  # lape takes +inf neurons too, but never absent ones
    for cls in r.neurons:
        for l, ids in enumerate(cls):
            assert all(i < site_neurons[l] for i in ids.tolist())
    assert torch.isnan(r.entropy[1, 5:]).all()


def test_normalised_entropy_and_functions():
    p = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.8, 0.0, 0.0, 0.0]]])
    q = normalise(p)
    assert torch.allclose(q[0, 0], torch.full((4,), 0.25))
    h = entropy(q)
    assert h[0, 0].item() == pytest.approx(math.log(4))
    assert h[0, 1].item() == 0
    r = identify(p, top_rate=0.5, filter_rate=0.5, activation_bar_ratio=0.5)
    assert r.normalised_entropy[0, 0].item() == pytest.approx(1.0)


def test_default_equals_lape_when_no_defect_applies():
    g = torch.Generator().manual_seed(7)
    p = torch.rand(4, 100, 5, generator=g)  # continuous: no ties; every class gets neurons
    d = identify(p, top_rate=0.05)
    l = identify(p, mode="lape", top_rate=0.05)
    assert len(l.neurons) == 5
    assert d.selected.tolist() == l.selected.tolist()
    _assert_same(d.neurons, l.neurons)


def test_bad_rates_raise_clear_errors():
    p = torch.rand(1, 4, 2)
    with pytest.raises(ValueError, match="filter_rate"):
        identify(p, filter_rate=0.0)
    with pytest.raises(ValueError, match="mode"):
        identify(p, mode="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        identify(p + 1)


def test_default_top_rate_and_a_users_table():
    assert default_top_rate("esc50") == default_top_rate("gise51") == 0.02
    assert default_top_rate("cremad") == default_top_rate("surge") == 0.01
    table = yaml.safe_load("top_rate: {default: 0.01, esc50: 0.02, gise51: 0.02}")[
        "top_rate"
    ]  # the study's, spelled out
    for task in ("esc50", "gise51", "gtzan", "cremad", "vc1"):
        assert default_top_rate(task, table) == default_top_rate(task)
    # one rule for every caller: an explicit rate wins over the table, the table over the built-in values
    assert resolve_top_rate("cremad", None, {"cremad": 0.05}) == 0.05
    assert resolve_top_rate("cremad", 0.2, {"cremad": 0.05}) == 0.2
    assert resolve_top_rate("esc50") == 0.02


def test_lape_mode_keeps_middle_empty_class_like_bincount():
    p = torch.zeros(1, 20, 3)
    p[0, 0, 0] = 0.9
    p[0, 1, 2] = 0.8  # class 1 gets nothing but is before a class that does
    counts, n = (p * 100).round(), torch.full((3,), 100)
    lape = select_neurons(counts / n, mode="lape", top_rate=0.1, filter_rate=0.9, activation_bar_ratio=0.9)
    _assert_same(lape, lape_oracle(counts, n, 0.1, 0.9, 0.9))
    assert len(lape) == 3 and lape[1][0].numel() == 0 and lape[2][0].tolist() == [1]
