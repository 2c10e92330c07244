"""The exact test, the corrections and the intervals behind the word "specific" (hand-computed oracles)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.significance import (
    adjust_p,
    attainable,
    benjamini_hochberg,
    failed_criteria,
    holm,
    is_specific,
    monte_carlo_p,
    paired_bootstrap_interval,
    smallest_p,
    wilson_interval,
)


# -- monte_carlo_p -------------------------------------------------------------------------------
def test_monte_carlo_p_hand_cases():
    # the Female set: -0.800 vs 8 draws, one of which also gave -0.800 -> ties count: (1 + 1) / 9
    draws = [-0.8, -0.2, 0.0, -0.1, 0.0, -0.4, -0.3, 0.0]
    assert monte_carlo_p(-0.8, draws) == pytest.approx(2 / 9)
    # strictly below every draw: the smallest p 1 / (1 + R)
    assert monte_carlo_p(-0.9, draws) == pytest.approx(1 / 9) == smallest_p(8)
    # above every draw: (1 + 8) / 9
    assert monte_carlo_p(0.5, draws) == 1.0
    # R = 0: nothing was tested
    assert monte_carlo_p(-1.0, []) == 1.0
    # all draws equal to the set's change: every draw ties -> p = 1
    assert monte_carlo_p(-0.25, [-0.25] * 7) == 1.0
    # all draws equal, above the set: p = 1 / (1 + R)
    assert monte_carlo_p(-0.25, [0.0] * 7) == pytest.approx(1 / 8)
    # recall changes computed in floating point: a tie up to rounding still counts
    assert monte_carlo_p(1 / 3 - 1, [(1 - 3) / 3 + 1e-15]) == 1.0
    # NaN draws are not draws; a NaN set change is no test
    assert monte_carlo_p(-0.5, [0.0, math.nan, 0.0]) == pytest.approx(1 / 3)
    assert math.isnan(monte_carlo_p(math.nan, [0.0]))


def test_monte_carlo_p_sequential_stop():
    # h = 2 hits reached at draw 3 of a budget of 99 -> Besag-Clifford p = h / L = 2 / 3
    assert monte_carlo_p(-0.1, [-0.5, 0.2, -0.1, 0.3], h=2, max_draws=99) == pytest.approx(2 / 3)
    # the h-th hit at exactly the last draw of the budget -> the plain formula over every draw run
    assert monte_carlo_p(-0.1, [0.0, 0.0, -0.2], h=1, max_draws=3) == pytest.approx((1 + 1) / 4)
    # never reached h hits: the plain formula
    assert monte_carlo_p(-0.3, [0.0, -0.4, 0.1, 0.2], h=5, max_draws=4) == pytest.approx(2 / 5)
    # no budget given: stopping at the h-th hit
    assert monte_carlo_p(0.0, [0.0], h=1) == 1.0
    with pytest.raises(ValueError):
        monte_carlo_p(0.0, [0.0], h=0)


def test_monte_carlo_p_is_valid_under_the_null():
    """Exchangeable set and draws: P(p <= a) <= a for every attainable a (checked exactly by enumerating
    every rank of the set among R + 1 distinct values)."""
    R = 9
    ps = [monte_carlo_p(float(rank), [float(v) for v in range(R + 1) if v != rank]) for rank in range(R + 1)]
    for a in sorted(set(ps)):
        assert np.mean(np.asarray(ps) <= a + 1e-12) <= a + 1e-12


# -- corrections ---------------------------------------------------------------------------------
#: Benjamini & Hochberg (1995), section 4: 15 p-values of a clinical trial; at 0.05 their procedure rejects
#: the 4 smallest, the Bonferroni-type (Holm) procedure the 3 smallest.
BH_1995 = [
    0.0001,
    0.0004,
    0.0019,
    0.0095,
    0.0201,
    0.0278,
    0.0298,
    0.0344,
    0.0459,
    0.3240,
    0.4262,
    0.5719,
    0.6528,
    0.7590,
    1.000,
]


def test_textbook_example_rejections():
    assert int((benjamini_hochberg(BH_1995) <= 0.05).sum()) == 4
    assert int((holm(BH_1995) < 0.05).sum()) == 3


def _holm_brute(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for i, idx in enumerate(order):
        out[idx] = min(1.0, max((m - j) * p[order[j]] for j in range(i + 1)))
    return out


def _bh_brute(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for i, idx in enumerate(order):
        out[idx] = min(min(1.0, m * p[order[j]] / (j + 1)) for j in range(i, m))
    return out


def test_corrections_match_their_definitions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=int(rng.integers(1, 12))).round(3).tolist()
        assert holm(p).tolist() == pytest.approx(_holm_brute(p))
        assert benjamini_hochberg(p).tolist() == pytest.approx(_bh_brute(p))


def test_corrections_hand_values_and_nan():
    # m = 3: Holm 0.01*3, max(0.02*2, .03), max(0.04, .04) ; BH 0.01*3/1, 0.02*3/2, 0.04*3/3
    assert holm([0.02, 0.01, 0.04]).tolist() == pytest.approx([0.04, 0.03, 0.04])
    assert benjamini_hochberg([0.02, 0.01, 0.04]).tolist() == pytest.approx([0.03, 0.03, 0.04])
    out = adjust_p([0.01, math.nan, 0.02], "holm")  # NaN is no test: m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="correction"):
        adjust_p([0.1], "bonferroni")  # type: ignore[arg-type]


def test_attainable():
    assert not attainable(19, 1)  # 1 / 20 = 0.05 is not < 0.05
    assert attainable(99, 4) and not attainable(99, 5)
    assert attainable(99, 50, correction="bh")
    assert not attainable(0, 1)


# -- intervals -----------------------------------------------------------------------------------
def test_wilson_known_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605; 0/10 -> 0-0.2775
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_paired_bootstrap_matches_resampling_clips():
    """The count-based bootstrap equals resampling the clips themselves (same distribution): compare its
    quantiles with a per-clip bootstrap of a concrete clip list."""
    lost, gained, n = 5, 1, 12
    lo, hi = paired_bootstrap_interval(lost, gained, n, reps=20000, seed=1)
    clips = np.array([-1] * lost + [1] * gained + [0] * (n - lost - gained))  # per-clip change of correctness
    rng = np.random.default_rng(2)
    boot = clips[rng.integers(0, n, size=(20000, n))].mean(1)
    assert lo == pytest.approx(np.quantile(boot, 0.025), abs=1 / n + 1e-9)
    assert hi == pytest.approx(np.quantile(boot, 0.975), abs=1 / n + 1e-9)
    assert lo <= (gained - lost) / n <= hi
    assert paired_bootstrap_interval(0, 0, 5) == (0.0, 0.0)
    assert paired_bootstrap_interval(5, 0, 5) == (-1.0, -1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_interval(4, 3, 5)


# -- the word "specific" -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p_adj, delta, lo, chance", itertools.product([0.01, 0.05, 0.2], [-0.3, 0.0, 0.1], [0.1, 0.5], [0.2])
)
def test_specific_rule(p_adj, delta, lo, chance):
    ok = is_specific(p_adj, delta, lo, chance)
    assert ok == (p_adj < 0.05 and delta < 0 and lo > chance)
    assert ok == (failed_criteria(p_adj, delta, lo, chance) == [])
    if ok:
        assert p_adj < 0.05


# -- the counts behind the paired bootstrap and the p-value of ablation_summary.csv -------------------
def test_count_flips_matches_per_clip_loop():
    import torch

    from analysis.ablation import count_flips

    g = torch.Generator().manual_seed(0)
    K, B, C = 4, 30, 3
    preds, labels = torch.randint(0, C, (K, B), generator=g), torch.randint(0, C, (B,), generator=g)
    out = count_flips(preds, labels, C)
    for k in range(K):
        for c in range(C):
            clips = [b for b in range(B) if labels[b] == c]
            lost = sum(preds[0, b] == c and preds[k, b] != c for b in clips)
            gained = sum(preds[0, b] != c and preds[k, b] == c for b in clips)
            assert (int(out[0, k, c]), int(out[1, k, c])) == (lost, gained)
    # the net change of recall is (gained - lost) / n, as ablation.csv's delta
    from analysis.ablation import count_correct

    correct, n = count_correct(preds, labels, C)
    assert torch.equal((correct - correct[:1]), out[1] - out[0])


def test_summarise_p_value_counts_ties():
    import pandas as pd

    from analysis.ablation import Condition, summarise
    import torch

    m = torch.zeros(1, 2, dtype=torch.bool)
    conds = [Condition("baseline", "baseline", m), Condition("class:a", "class", m, ["a"])]
    conds += [
        Condition(f"random:class:a:{d}", "random", m, ["a"], draw=d, group="random:class:a", parent="class:a")
        for d in range(4)
    ]
    deltas = {
        "baseline": 0.0,
        "class:a": -0.5,
        "random:class:a:0": -0.5,
        "random:class:a:1": 0.0,
        "random:class:a:2": -0.25,
        "random:class:a:3": 0.0,
    }
    rows = [
        dict(
            condition=c.name,
            kind=c.kind,
            target="a",
            k="",
            draw="" if c.draw is None else c.draw,
            **{"class": "a"},
            n=4,
            correct=0,
            accuracy=0.5 + deltas[c.name],
            delta=deltas[c.name],
            lost=2 if c.name == "class:a" else 0,
            gained=0,
        )
        for c in conds
    ]
    s = summarise(pd.DataFrame(rows), conds)
    row = s[(s["group"] == "class:a")].iloc[0]
    assert row["p_value"] == pytest.approx((1 + 1) / (1 + 4))  # the tie at -0.5 counts against the set
    assert row["change_lo"] <= -0.5 <= row["change_hi"]
