"""Functional core of the ablation (analysis/ablation.py): masks, random draws, controls, scoring, summary."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from analysis import ablation as A
from analysis import draws as D
from analysis.aape import identify, lowest_entropy_by_class

SN = [6, 4, 5]  # ragged sites


def test_masks_from_pairs_and_layers_validate():
    m = A.mask_from_pairs([[0, 5], [2, 4], [1, 0]], SN)
    assert m.shape == (3, 6) and A.mask_to_pairs(m) == [[0, 5], [1, 0], [2, 4]]
    assert torch.equal(A.mask_from_layers([torch.tensor([5]), torch.tensor([0]), torch.tensor([4])], SN), m)
    with pytest.raises(ValueError, match=r"x: entry 0 \[1, 4\]: neuron 4 outside 0..3 of layer 1"):
        A.mask_from_pairs([[1, 4]], SN, "x")
    with pytest.raises(ValueError, match="layer 3 outside"):
        A.mask_from_pairs([[3, 0]], SN)
    with pytest.raises(ValueError, match="2 layers given"):
        A.mask_from_layers([torch.tensor([0]), torch.tensor([0])], SN)
    assert torch.equal(A.existing_mask(SN)[1], torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool))


def test_profile_draws_are_layer_matched_seeded_and_avoid_excluded():
    m = A.mask_from_pairs([[0, 0], [0, 1], [2, 3]], SN)
    avail = A.existing_mask(SN) & ~m
    avail[0, 5] = False  # e.g. a NaN neuron
    prof = D.size_profile(m)
    d1 = [D.profile_draw(prof, avail, 7, d) for d in range(50)]
    d2 = [D.profile_draw(prof, avail, 7, d) for d in range(50)]
    assert all(torch.equal(a, b) for a, b in zip(d1, d2))
    assert not all(torch.equal(a, D.profile_draw(prof, avail, 8, d)) for d, a in enumerate(d1))
    seen = torch.zeros_like(m)
    for d in d1:
        assert torch.equal(d.sum(1), m.sum(1))
        assert not (d & ~avail).any()
        seen |= d
    assert torch.equal(seen[0], avail[0]) and torch.equal(seen[2], avail[2])  # every available one drawn
    with pytest.raises(ValueError, match="layer 0 needs 6 random neurons but only 3 are available"):
        D.profile_draw(D.size_profile(torch.ones(3, 6, dtype=torch.bool) & A.existing_mask(SN)), avail, 0, 0)


def test_index_plus_one_control():
    m = A.mask_from_pairs([[0, 1], [0, 2], [1, 3]], SN)
    c = A.index_plus_one(m, SN)
    assert A.mask_to_pairs(c) == [[0, 0], [0, 2], [0, 3]][1:] + [[1, 0]]


def test_build_conditions_kinds_names_and_exclusion():
    sets = {
        "a": A.mask_from_pairs([[0, 0], [1, 1]], SN),
        "b": A.mask_from_pairs([[0, 0], [2, 2]], SN),
        "c": torch.zeros(3, 6, dtype=torch.bool),
    }
    expl = {"study": (A.mask_from_pairs([[2, 0]], SN), ["a", "b"])}
    ranked = {"a": [(1, 1), (0, 0)]}
    absent = torch.zeros(3, 6, dtype=torch.bool)
    absent[2, 1] = True
    conds = A.build_conditions(
        SN,
        ["a", "b", "c"],
        A.ConditionSpec(k_grid=[1, 2, 5], random_draws=4, index_plus_one=True, seed=0, share_draws=False),
        class_sets=sets,
        explicit=expl,
        shared=[["a", "b"]],
        ranked=ranked,
        absent=absent,
    )
    names = [c.name for c in conds]
    assert names[0] == "baseline" and "class:c" not in names  # empty set: no condition
    for n in ("class:a", "class:b", "shared:a&b", "study", "topk:a:1", "topk:a:2", "index+1:study"):
        assert n in names
    assert "topk:a:5" not in names
    by = {c.name: c for c in conds}
    assert A.mask_to_pairs(by["shared:a&b"].mask) == [[0, 0]]
    assert A.mask_to_pairs(by["topk:a:1"].mask) == [[1, 1]] and by["topk:a:1"].k == 1
    selected = sets["a"] | sets["b"]
    for c in conds:
        if c.kind == "random":
            assert c.group == f"random:{c.parent}" and not (c.mask & selected).any()
            assert not (c.mask & absent).any() and not (c.mask & ~A.existing_mask(SN)).any()
            assert torch.equal(c.mask.sum(1), by[c.parent].mask.sum(1))
    assert sum(c.kind == "random" for c in conds) == 4 * 6  # class a, class b, shared, study, topk 1, 2
    again = A.build_conditions(
        SN,
        ["a", "b", "c"],
        A.ConditionSpec(k_grid=[1, 2, 5], random_draws=4, index_plus_one=True, seed=0, share_draws=False),
        class_sets=sets,
        explicit=expl,
        shared=[["a", "b"]],
        ranked=ranked,
        absent=absent,
    )
    assert all(torch.equal(x.mask, y.mask) for x, y in zip(conds, again))
    # shared: one sequence of draws per neurons-per-layer profile, the same masks as each set's own copies
    shared = A.build_conditions(
        SN,
        ["a", "b", "c"],
        A.ConditionSpec(k_grid=[1, 2, 5], random_draws=4, index_plus_one=True, seed=0),
        class_sets=sets,
        explicit=expl,
        shared=[["a", "b"]],
        ranked=ranked,
        absent=absent,
    )
    profiles = {tuple(c.mask.sum(1).tolist()) for c in conds if c.kind not in ("random", "baseline", "index_plus_one")}
    assert sum(c.kind == "random" for c in shared) == 4 * len(profiles) < 4 * 6
    for c in conds:
        if c.kind not in ("random", "baseline", "index_plus_one"):
            own = D.matched_draws(conds, c.name)
            assert [x.name for x in own] == [f"random:{c.name}:{d}" for d in range(4)]
            assert all(torch.equal(x.mask, y.mask) for x, y in zip(own, D.matched_draws(shared, c.name)))


def test_apply_channel_affine_per_row_conditions():
    out = torch.randn(6, 3, 4)  # [R, P, N] ViT-style
    conds = [
        A.Condition("baseline", "baseline", torch.zeros(1, 4, dtype=torch.bool)),
        A.Condition("x", "explicit", torch.tensor([[True, False, False, False]])),
        A.Condition("y", "explicit", torch.tensor([[False, False, True, True]])),
    ]
    sc, sh, _ = A.site_scales(conds, [4], gain=0.5)
    rows = torch.tensor([0, 0, 1, 1, 2, 2])
    y = A.apply_channel_affine(out, sc[0], sh[0], -1, rows)
    assert torch.equal(y[:2], out[:2])
    assert torch.equal(y[2:4, :, 0], out[2:4, :, 0] * 0.5) and torch.equal(y[2:4, :, 1:], out[2:4, :, 1:])
    assert torch.equal(y[4:, :, 2:], out[4:, :, 2:] * 0.5) and torch.equal(y[4:, :, :2], out[4:, :, :2])
    with pytest.raises(ValueError, match="site output has 5 channels on axis -1, the neuron mask 4"):
        A.apply_channel_affine(torch.randn(2, 3, 5), sc[0][1], sh[0][1], -1)


def test_scoring_table_and_summary():
    classes = ["a", "b"]
    conds = [
        A.Condition("baseline", "baseline", torch.zeros(1, 2, dtype=torch.bool)),
        A.Condition("class:a", "class", torch.tensor([[True, False]]), ["a"]),
    ]
    conds += [
        A.Condition(
            f"random:class:a:{d}",
            "random",
            torch.tensor([[False, True]]),
            ["a"],
            draw=d,
            group="random:class:a",
            parent="class:a",
        )
        for d in range(4)
    ]
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    preds = torch.stack(
        [
            labels,  # baseline: perfect
            torch.tensor([1, 1, 1, 0, 1, 1]),  # class:a loses 3 of 4 a's
            labels,
            torch.tensor([1, 0, 0, 0, 1, 1]),
            labels,
            torch.tensor([0, 0, 0, 0, 0, 1]),
        ]
    )
    correct, n = A.count_correct(preds, labels, 2)
    assert n.tolist() == [4, 2] and correct[1].tolist() == [1, 2]
    t = A.results_table(conds, classes, correct, n)
    assert list(t.columns) == A.ABLATION_COLUMNS
    r = t[(t.condition == "class:a") & (t["class"] == "a")].iloc[0]
    assert r.accuracy == 0.25 and r.delta == -0.75 and r.n == 4 and r.correct == 1
    assert t[(t.condition == "class:a") & (t["class"] == "ALL")].iloc[0].accuracy == pytest.approx(3 / 6)
    s = A.summarise(t, conds)
    g = s[(s.group == "random:class:a") & (s["class"] == "a")].iloc[0]
    d = np.array([0, -0.25, 0, 0])
    assert g.n_draws == 4 and g.delta_mean == pytest.approx(d.mean()) and g.delta_std == pytest.approx(d.std(ddof=1))
    assert g.delta_lo == pytest.approx(np.quantile(d, 0.025)) and g.delta_hi == pytest.approx(np.quantile(d, 0.975))
    h = s[(s.group == "class:a") & (s["class"] == "a")].iloc[0]
    assert h.on_target and h.random_group == "random:class:a" and h.p_random == 0.0
    assert h.random_delta_mean == pytest.approx(d.mean())
    off = s[(s.group == "class:a") & (s["class"] == "b")].iloc[0]
    # class b under the random draws: deltas 0, 0, 0, -0.5 -> all four are <= the targeted set's 0
    assert not off.on_target and off.delta_mean == 0.0 and off.p_random == 1.0
    assert off.random_delta_mean == pytest.approx(-0.125)


def test_dataset_means():
    stats = {"act_sum": torch.tensor([[2.0, 4.0]], dtype=torch.float64), "n_tokens": torch.tensor([1, 3])}
    assert torch.equal(A.dataset_means(stats), torch.tensor([[0.5, 1.0]], dtype=torch.float64))
    assert torch.equal(A.dataset_means({**stats, "n_positions": 2}), torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="act_sum"):
        A.dataset_means({"n_tokens": torch.tensor([1])}, "s.pt")


def test_count_confusion_matches_brute_force_and_round_trips_through_the_table():
    g = torch.Generator().manual_seed(0)
    K, B, C = 4, 50, 5
    preds = torch.randint(0, C, (K, B), generator=g)
    labels = torch.randint(0, C, (B,), generator=g)
    conf = A.count_confusion(preds, labels, C)
    brute = torch.zeros(K, C, C, dtype=torch.long)
    for k in range(K):
        for b in range(B):
            brute[k, labels[b], preds[k, b]] += 1
    assert conf.dtype == torch.int64 and torch.equal(conf, brute)
    # partial counts (e.g. of two halves of the data, or two processes) merge exactly by summation
    assert torch.equal(
        A.count_confusion(preds[:, :20], labels[:20], C) + A.count_confusion(preds[:, 20:], labels[20:], C), conf
    )
    correct, n = A.count_correct(preds, labels, C)
    assert torch.equal(conf.diagonal(dim1=1, dim2=2), correct) and torch.equal(conf[0].sum(1), n)
    conds = [A.Condition("baseline", "baseline", torch.zeros(1, 1, dtype=torch.bool))] + [
        A.Condition(f"class:c{k}", "class", torch.ones(1, 1, dtype=torch.bool), [f"c{k}"]) for k in range(1, K)
    ]
    classes = [f"c{i}" for i in range(C)]
    table = A.confusion_table(conds, classes, conf)
    assert (table["count"] > 0).all() and int(table["count"].sum()) == K * B
    for k, c in enumerate(conds):
        assert torch.equal(A.confusion_matrix(table, c.name, classes), conf[k])


def test_lowest_entropy_conditions_are_threshold_free():
    # saturated probabilities: the quantile bars select nothing, the lowest-entropy ranking still exists
    p = torch.ones(2, 6, 3)
    p[0, 2] = torch.tensor([1.0, 0.2, 0.2])
    p[1, 4] = torch.tensor([0.1, 0.1, 1.0])
    p[1, 5] = 0.0  # dead neuron: never ranked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert identify(p, top_rate=0.2).n_selected == 0
    ranked = lowest_entropy_by_class(p, 2)
    assert ranked[0][0] == (0, 2) and ranked[2] == [(1, 4)] and (1, 5) not in sum(ranked, [])
    conds = A.build_conditions(
        [6, 6],
        ["a", "b", "c"],
        A.ConditionSpec(
            k_grid=[1, 2], lowest_entropy_k=[1, 2], random_draws=3, index_plus_one=True, seed=0, share_draws=False
        ),
        lowest_entropy={"a": ranked[0], "c": ranked[2]},
    )
    names = [c.name for c in conds]
    assert {"lowent:a:1", "lowent:a:2", "lowent:c:1"} <= set(names) and "lowent:c:2" not in names
    assert sum(n.startswith("random:lowent:a:2:") for n in names) == 3
    assert not any(n.startswith("index+1:lowent") for n in names)


def test_lowest_entropy_draws_only_change_the_lowest_entropy_controls():
    sets = {"a": torch.zeros(2, 6, dtype=torch.bool)}
    sets["a"][0, 0] = True
    conds = A.build_conditions(
        [6, 6],
        ["a", "b"],
        A.ConditionSpec(
            k_grid=[2], lowest_entropy_k=[2], lowest_entropy_draws=1, random_draws=3, seed=0, share_draws=False
        ),
        class_sets=sets,
        lowest_entropy={"b": [(1, 3), (1, 4)]},
    )
    names = [c.name for c in conds]
    assert sum(n.startswith("random:class:a:") for n in names) == 3
    assert sum(n.startswith("random:lowent:b:2:") for n in names) == 1
