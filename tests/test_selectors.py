"""Baseline selectors on planted neurons, and the minimum-activity filter (brute-force oracles)."""

from __future__ import annotations

import torch

from analysis.aape import identify, inactive_neurons, lowest_entropy_by_class
from analysis.draws import matched_draws
from analysis.selectors import contrast_scores, select, top_per_layer


def _planted() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    p = 0.2 + 0.2 * torch.rand(2, 20, 3, generator=g)  # L=2, N=20, C=3: unremarkable neurons
    p[0, 5] = torch.tensor([0.9, 0.1, 0.1])  # fires for class 0 only: the contrast neuron of class 0
    p[1, 3] = torch.tensor([0.97, 0.95, 0.95])  # fires for everything: the magnitude neuron, no contrast
    p[1, 8] = torch.tensor([0.1, 0.85, 0.1])  # class 1's contrast neuron
    p[0, 7] = torch.tensor([0.005, 0.0, 0.0])  # near-dead: lowest entropy of all, never selected
    return p


def test_selectors_find_the_planted_neurons():
    p = _planted()
    sizes = torch.tensor([[1, 1], [0, 1], [0, 0]])  # class 0: one per layer; class 1: one in layer 1
    con = select(p, "contrast", sizes)
    assert con[0, 0].nonzero().flatten().tolist() == [5]
    assert con[1, 1].nonzero().flatten().tolist() == [8]
    assert not con[2].any() and not con[1, 0].any()
    mag = select(p, "magnitude", sizes)
    assert mag[0, 1].nonzero().flatten().tolist() == [3] and mag[1, 1].nonzero().flatten().tolist() == [3]
    assert torch.equal(con.sum(-1), sizes) and torch.equal(mag.sum(-1), sizes)  # the AAPE sets' sizes
    assert not con[:, 0, 7].any() and not mag[:, 0, 7].any()


def test_top_per_layer_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(3, 12, 4, generator=g)
    score = contrast_scores(p)
    eligible = torch.rand(3, 12, generator=g) > 0.2
    sizes = torch.randint(0, 4, (4, 3), generator=g)
    got = top_per_layer(score, sizes, eligible)
    for c in range(4):
        for l in range(3):
            cand = sorted((n for n in range(12) if eligible[l, n]), key=lambda n: (-float(score[l, n, c]), n))
            assert got[c, l].nonzero().flatten().tolist() == sorted(cand[: int(sizes[c, l])])


def test_minimum_activity_filter_excludes_near_dead_neurons():
    p = _planted()
    assert inactive_neurons(p).nonzero().tolist() == [[0, 7]]
    low = lowest_entropy_by_class(p, 3)
    assert (0, 7) not in low[0] and low[0][0] == (0, 5)
    assert (0, 7) == lowest_entropy_by_class(p, 3, min_activity=0.0)[0][0]  # without the filter it ranks first
    r = identify(p, top_rate=0.05, filter_rate=0.9, activation_bar_ratio=0.9)
    assert r.n_inactive == 1 and [0, 7] not in r.selected.tolist()
    assert identify(p, mode="lape", top_rate=0.05, filter_rate=0.9, activation_bar_ratio=0.9).n_inactive == 0


def test_selector_conditions_from_a_run_folder(tmp_path):
    """``ablation.selectors`` adds ``<selector>:<class>`` conditions with the AAPE sets' per-layer sizes and
    matched random draws (shared with the sets of the same per-layer sizes)."""
    from _fake_run import write_fake_run
    from analysis.ablation import ConditionSpec
    from analysis.runs.conditions import conditions_from_run

    count = (_planted() * 100).round()
    d = write_fake_run(tmp_path, "t", "m", count, torch.full((3,), 100), classes=["a", "b", "c"])
    torch.save(
        [
            [torch.tensor([5]), torch.tensor([2])],
            [torch.tensor([], dtype=torch.long), torch.tensor([8])],
            [torch.tensor([], dtype=torch.long)] * 2,
        ],
        d / "neurons.pt",
    )
    spec = ConditionSpec(selectors=["contrast", "magnitude"], random_draws=2)
    conds = conditions_from_run(d, [20, 20], ["a", "b", "c"], spec)
    by = {c.name: c for c in conds}
    aape = {c: by[f"class:{c}"].mask for c in ("a", "b")}
    for sel in ("contrast", "magnitude"):
        for c in ("a", "b"):
            m = by[f"{sel}:{c}"].mask
            assert by[f"{sel}:{c}"].kind == "selector" and torch.equal(m.sum(1), aape[c].sum(1))
            draws = [x.mask for x in matched_draws(conds, f"{sel}:{c}")]  # shared by sets of one profile
            assert len(draws) == 2
            assert all(torch.equal(x.sum(1), m.sum(1)) and not (x & m).any() for x in draws)
        assert f"{sel}:c" not in by  # c has no AAPE set: nothing to match
    assert by["contrast:a"].mask[0].nonzero().flatten().tolist() == [5]
    assert by["magnitude:a"].mask[1].nonzero().flatten().tolist() == [3]
