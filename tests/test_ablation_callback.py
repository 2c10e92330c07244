"""AblationCallback on the planted toy encoder: one pass, exact baseline, planted effect vs random sets."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from analysis import ablation as A
from analysis import draws as D
from analysis.runs.atomic import OutputExistsError
from callbacks.ablation import AblationCallback, NeuronList
from _ablation_toy import (
    CLASSES,
    ToyEncoder,
    run_test,
)


def test_planted_neuron_drops_its_class_random_sets_do_not(planted, tmp_path):
    target = "t800"  # planted neuron (0, 1) and its pass-through (1, 1)
    cb = AblationCallback(
        out_dir=str(tmp_path / "abl"),
        run_dir=str(planted["run"]),
        class_sets=True,
        neuron_lists=[NeuronList("planted", [[0, 1]], [target])],
        random_draws=5,
        seed=3,
        k_grid=[1, 2],
        index_plus_one=True,
    )
    model, res = run_test(planted, cb, logger=TensorBoardLogger(str(tmp_path / "tb")))
    t = pd.read_csv(tmp_path / "abl" / "ablation.csv")
    assert list(t.columns) == A.ABLATION_COLUMNS
    base = t[t.condition == "baseline"].set_index("class")
    assert (base.loc[CLASSES, "accuracy"] == 1.0).all(), "the probe must be perfect on the clean toy"
    # baseline == plain trainer.test accuracy exactly
    assert base.loc["ALL", "correct"] == round(res["test/acc"] * base.loc["ALL", "n"])
    assert base.loc["ALL", "accuracy"] == pytest.approx(res["test/acc"], abs=1e-7)
    chance = 1 / len(CLASSES)
    for cond in ("planted", f"class:{target}"):
        r = t[t.condition == cond].set_index("class")
        assert r.loc[target, "accuracy"] <= chance
        others = [c for c in CLASSES if c != target]
        assert (r.loc[others, "delta"] == 0).all()
    # 5 matched draws each for class:t800, planted, topk:t800:1, topk:t800:2 (sets of the same neurons per
    # layer share theirs), and under every draw the target class keeps its recall
    conds = {c.name: c for c in cb.conditions}
    matched = {
        name: D.matched_draws(cb.conditions, name)
        for name in ("planted", f"class:{target}", f"topk:{target}:1", f"topk:{target}:2")
    }
    assert all(len(m) == 5 for m in matched.values())
    names = {c.name for m in matched.values() for c in m}
    rnd = t[t.condition.isin(names) & (t["class"] == target)]
    assert len(rnd) == len(names) and (rnd["delta"] == 0).all(), rnd[rnd.delta != 0]
    # the random sets really were matched and avoided the selected neurons
    for d in range(5):
        m = matched["planted"][d].mask
        assert m.sum() == 1 and m[0].sum() == 1
        assert not m[0, :4].any()  # selected (planted) neurons are excluded
        m2 = matched[f"class:{target}"][d].mask  # layer-matched: one neuron per layer
        assert m2[0].sum() == 1 and m2[1].sum() == 1
        assert not m2[0, :4].any() and not m2[1, :4].any()
        assert not m2[1, 6:].any()  # site 1 has 6 neurons: padding never drawn
    assert conds["index+1:planted"].mask.nonzero().tolist() == [[0, 2]]
    # summary: on-target delta far outside the random interval
    s = pd.read_csv(tmp_path / "abl" / "ablation_groups.csv")
    assert list(s.columns) == A.SUMMARY_COLUMNS
    row = s[(s.group == "planted") & (s["class"] == target)].iloc[0]
    assert bool(row.on_target) and row.delta_mean <= chance - 1
    assert row.random_delta_lo == 0 and row.random_delta_hi == 0 and row.p_random == 0
    rg = s[(s.group == row.random_group) & (s["class"] == target)].iloc[0]
    assert rg.n_draws == 5 and rg.delta_mean == 0 and rg.delta_lo == 0 and rg.delta_hi == 0
    # top-k grid: t800 has 2 ranked neurons, both k present
    assert {"topk:t800:1", "topk:t800:2"} <= set(t.condition)
    for f in ("ablation_matrix.pdf", "ablation_k_curve.pdf", "ablation_conditions.json"):
        assert (tmp_path / "abl" / f).stat().st_size > 0
    # TensorBoard scalars were written
    ev = list((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert ev
    # hooks removed after test
    assert all(not model.encoder.get_submodule(s)._forward_hooks for s in ToyEncoder.neuron_sites)
    # no silent overwrite
    with pytest.raises(OutputExistsError):
        run_test(planted, AblationCallback(out_dir=str(tmp_path / "abl"), run_dir=str(planted["run"]), random_draws=0))


def test_expand_strategy_matches_loop(planted, tmp_path):
    kw = dict(run_dir=str(planted["run"]), random_draws=3, seed=1, figures=False, k_grid=[1])
    run_test(planted, AblationCallback(out_dir=str(tmp_path / "loop"), strategy="loop", **kw))
    run_test(planted, AblationCallback(out_dir=str(tmp_path / "exp"), strategy="expand", conditions_per_pass=3, **kw))
    a = pd.read_csv(tmp_path / "loop" / "ablation.csv")
    b = pd.read_csv(tmp_path / "exp" / "ablation.csv")
    pd.testing.assert_frame_equal(a, b)


class _Boom(Exception):
    pass


def test_hooks_removed_on_exception(planted, tmp_path):
    enc = ToyEncoder()
    cb = AblationCallback(out_dir=str(tmp_path / "x"), run_dir=str(planted["run"]), random_draws=1)
    orig = cb.on_test_batch_end

    def boom(*a, **k):
        orig(*a, **k)
        assert any(enc.get_submodule(s)._forward_hooks for s in enc.neuron_sites)
        raise _Boom()

    cb.on_test_batch_end = boom
    with pytest.raises(_Boom):
        run_test(planted, cb, encoder=enc)
    assert all(not enc.get_submodule(s)._forward_hooks for s in enc.neuron_sites)
    assert not (tmp_path / "x" / "ablation.csv").exists()


def test_zero_gain_changes_only_listed_channels(planted):
    enc = ToyEncoder()
    audio = planted["audio"][:8]
    listed = [[0, 1], [0, 4], [1, 5]]
    cb = AblationCallback(
        out_dir="unused",
        neuron_lists=[NeuronList("l", listed, [])],
        random_draws=0,
        class_sets=False,
        run_dir=str(planted["run"]),
    )
    cb.build(enc, CLASSES)
    acts = {}

    def rec(tag):
        return [
            enc.get_submodule(s).register_forward_hook(
                lambda m, i, o, l=l: acts.__setitem__((tag, l), o.detach().clone())
            )
            for l, s in enumerate(enc.neuron_sites)
        ]

    # clean reference: (0, 1) and (0, 4) zeroed must change only those site-0 channels
    hs = rec("clean")
    with torch.no_grad():
        enc(audio)
    for h in hs:
        h.remove()
    cb._register(enc)  # ablation hooks first, then recorders see the hooked outputs
    hs = rec("abl")
    cb._cond = 1
    with torch.no_grad():
        enc(audio)
    cb._remove()
    for h in hs:
        h.remove()
    a0, c0 = acts[("abl", 0)], acts[("clean", 0)]
    assert (a0[:, [1, 4]] == 0).all() and (c0[:, [1, 4]] != 0).any()
    keep = [0, 2, 3, 5, 6, 7]
    assert torch.equal(a0[:, keep], c0[:, keep])
    # at site 1 the listed channel 5 is zero; the ones fed only by untouched site-0 channels are identical
    a1, c1 = acts[("abl", 1)], acts[("clean", 1)]
    assert (a1[:, 5] == 0).all()
    assert torch.equal(a1[:, [0, 2, 3]], c1[:, [0, 2, 3]])
    # removing the hooks restores the clean forward
    with torch.no_grad():
        assert torch.equal(enc(audio), ToyEncoder()(audio))


def test_hooks_bit_exact_on_a_fixed_input():
    """Site-level check independent of propagation: the hook output equals the input except the listed
    channels, which are 0 (gain) or the mean (mean mode)."""
    out = torch.randn(3, 8, 5)
    m = torch.zeros(2, 8, dtype=torch.bool)
    m[0, [2, 6]] = True
    conds = [A.Condition("baseline", "baseline", torch.zeros_like(m)), A.Condition("x", "explicit", m)]
    sc, sh, act = A.site_scales(conds, [8, 6], gain=0.0)
    y = A.apply_channel_affine(out, sc[0][1], sh[0][1], 1)
    assert (y[:, [2, 6]] == 0).all() and torch.equal(y[:, [0, 1, 3, 4, 5, 7]], out[:, [0, 1, 3, 4, 5, 7]])
    assert act == [True, False]
    means = torch.arange(16.0).view(2, 8)
    sc, sh, _ = A.site_scales(conds, [8, 6], mode="mean", means=means)
    y = A.apply_channel_affine(out, sc[0][1], sh[0][1], 1)
    assert (y[:, 2] == 2.0).all() and (y[:, 6] == 6.0).all()
    assert torch.equal(y[:, [0, 1, 3, 4, 5, 7]], out[:, [0, 1, 3, 4, 5, 7]])
    y = A.apply_channel_affine(out, sc[0][0], sh[0][0], 1)  # baseline row: identity
    assert torch.equal(y, out)


def test_mean_mode_uses_stats_means(planted, tmp_path):
    stats = torch.load(planted["run"] / "stats.pt")
    means = A.dataset_means(stats)
    enc = ToyEncoder()
    cb = AblationCallback(
        out_dir=str(tmp_path / "m"),
        run_dir=str(planted["run"]),
        mode="mean",
        random_draws=0,
        class_sets=False,
        neuron_lists=[NeuronList("l", [[0, 4]], [])],
    )
    cb.build(enc, CLASSES)
    seen = {}
    cb._register(enc)
    h = enc.get_submodule("block0.act").register_forward_hook(lambda m, i, o: seen.__setitem__(0, o.clone()))
    cb._cond = 1
    with torch.no_grad():
        enc(planted["audio"][:4])
    cb._remove()
    h.remove()
    assert torch.allclose(seen[0][:, 4], torch.full_like(seen[0][:, 4], float(means[0, 4])))
    # the mean is act_sum / positions: recompute it from the training audio
    assert means[0, 6] == 0  # dead neuron
    # the mean of the loudness neuron is positive and below its max
    assert 0 < means[0, 4] < 1


def test_bad_neuron_list_is_a_clear_error(planted, tmp_path):
    cb = AblationCallback(
        out_dir=str(tmp_path / "e"),
        neuron_lists=[NeuronList("bad", [[1, 7]], [])],
        class_sets=False,
        run_dir=str(planted["run"]),
    )
    with pytest.raises(ValueError, match=r"neuron list 'bad'.*neuron 7 outside 0..5 of layer 1"):
        cb.build(ToyEncoder(), CLASSES)
    cb = AblationCallback(
        out_dir=str(tmp_path / "e"),
        neuron_lists=[NeuronList("bad", [[0, 1]], ["ANG"])],
        class_sets=False,
        run_dir=str(planted["run"]),
    )
    with pytest.raises(ValueError, match="unknown class 'ANG'"):
        cb.build(ToyEncoder(), CLASSES)
    cb = AblationCallback(
        out_dir=str(tmp_path / "e"),
        neuron_lists=[NeuronList("ok", [[0, 1]], ["ANG"])],
        class_sets=False,
        run_dir=str(planted["run"]),
        class_aliases={"ANG": "t800"},
    )
    assert cb.build(ToyEncoder(), CLASSES)[1].target == ["t800"]


def test_expand_matches_loop_on_chunked_m2d():
    """Per-row masks follow ``encoder.positions(...).clip`` through M2D's chunking (1 s = 4 chunks)."""
    from lightning_modules.encoders import M2DEncoder

    enc = M2DEncoder(
        checkpoint=None, width=64, depth=2, num_heads=4, mlp_ratio=4.0, input_frames=32, seed=0, name="t"
    ).eval()
    x, lens = torch.randn(3, 16000) * 0.1, torch.tensor([16000, 12000, 8000])
    lists = [NeuronList(f"s{i}", [[i % 2, j] for j in range(i * 7, i * 7 + 40)], []) for i in range(5)]
    outs = {}
    for strategy in ("loop", "expand"):
        cb = AblationCallback(
            out_dir="unused",
            neuron_lists=lists,
            class_sets=False,
            random_draws=0,
            strategy=strategy,
            conditions_per_pass=3,
        )
        cb.build(enc, ["a", "b", "c"])
        cb._register(enc)
        res = []
        with torch.no_grad():
            if strategy == "loop":
                for i in range(1, 6):
                    cb._cond = i
                    res.append(enc(x, lens))
            else:
                for ids in ([1, 2, 3], [4, 5]):
                    cb._rows = (torch.tensor(ids), 3)
                    res += list(enc(x.repeat(len(ids), 1), lens.repeat(len(ids))).view(len(ids), 3, -1))
        cb._remove()
        outs[strategy] = torch.stack(res)
    with torch.no_grad():
        base = enc(x, lens)
    assert torch.allclose(outs["loop"], outs["expand"], atol=1e-5)
    assert (outs["loop"] - base).abs().amax() > 1e-3  # the ablations did something


def test_class_sets_accept_lape_mode_neurons_without_trailing_empty_classes(tmp_path):
    """LAPE's format drops classes after the last class with a neuron; the ablation still maps every
    class of classes.txt (the dropped ones to empty sets)."""
    import torch

    from _fake_run import write_fake_run
    from analysis.runs.conditions import read_class_sets

    count = torch.zeros(2, 4, 3, dtype=torch.long)
    run = write_fake_run(tmp_path, "t", "m", count, torch.full((3,), 10), classes=["a", "b", "c"])
    torch.save(
        [
            [torch.tensor([1]), torch.tensor([], dtype=torch.long)],
            [torch.tensor([], dtype=torch.long), torch.tensor([0, 3])],
        ],
        run / "neurons.pt",
    )
    sets = read_class_sets(run, ["a", "b", "c"], [4, 4])
    assert sets["a"].nonzero().tolist() == [[0, 1]]
    assert sets["b"].nonzero().tolist() == [[1, 0], [1, 3]]
    assert not sets["c"].any()


def test_a_class_without_counted_positions_does_not_make_every_neuron_absent(tmp_path):
    """A neuron is absent only when it has no probability for ANY class (NaN in every column), the
    definition the AAPE selection and the report use. A class with nothing counted (a NaN column) must
    not turn every neuron absent: the matched random controls must still be drawable."""
    from types import SimpleNamespace

    from _fake_run import write_fake_run

    count = torch.ones(2, 4, 3, dtype=torch.long)
    count[..., 2] = 0  # class c has no counted position: 0 / 0
    run = write_fake_run(tmp_path, "t", "m", count, torch.tensor([10, 10, 0]), classes=["a", "b", "c"])
    assert torch.isnan(torch.load(run / "over_zero.pt"))[..., 2].all()  # class c: nothing counted
    torch.save(
        [
            [torch.tensor([1]), torch.tensor([], dtype=torch.long)],
            [torch.tensor([], dtype=torch.long)] * 2,
            [torch.tensor([], dtype=torch.long)] * 2,
        ],
        run / "neurons.pt",
    )
    cb = AblationCallback(out_dir=str(tmp_path / "abl"), run_dir=str(run), random_draws=3, seed=0)
    conds = cb.build(SimpleNamespace(site_neurons=[4, 4], neuron_sites=["s0", "s1"]), ["a", "b", "c"])
    rnd = [c for c in conds if c.kind == "random"]
    assert len(rnd) == 3
    for c in rnd:
        assert c.mask.nonzero().tolist()[0][0] == 0 and int(c.mask.sum()) == 1 and not c.mask[0, 1]


def test_confusion_counts_and_lowest_entropy_conditions(planted, tmp_path, capsys):
    """ablation_confusion.csv holds every condition's true × predicted counts exactly (its diagonal is
    ablation.csv's ``correct``, its rows sum to ``n``); the threshold-free lowent:<c>:<k> conditions come with
    matched random draws and no index+1 control; ``python -m analysis confusion`` draws any condition."""
    from analysis.app.cli import main as cli_main
    from analysis.runs.read import read_ablation_confusion

    cb = AblationCallback(
        out_dir=str(tmp_path / "abl"),
        run_dir=str(planted["run"]),
        random_draws=2,
        seed=1,
        k_grid=[1, 2],
        lowest_entropy_k=[2],
        index_plus_one=True,
        neuron_lists=[NeuronList("planted", [[0, 1]], ["t800"])],
    )
    run_test(planted, cb)
    t = pd.read_csv(tmp_path / "abl" / "ablation.csv", keep_default_na=False)
    conf, classes = read_ablation_confusion(tmp_path / "abl")
    assert classes == CLASSES and list(conf.columns) == A.CONFUSION_COLUMNS
    for cond in cb.conditions:
        m = A.confusion_matrix(conf, cond.name, classes)
        assert torch.equal(m, cb.confusion[[c.name for c in cb.conditions].index(cond.name)])
        rows = t[(t.condition == cond.name) & (t["class"] != "ALL")].set_index("class")
        assert m.diagonal().tolist() == [int(rows.loc[c, "correct"]) for c in classes]
        assert m.sum(1).tolist() == [int(rows.loc[c, "n"]) for c in classes]
    # the planted neuron's clips go elsewhere: its class's row loses its diagonal
    planted_m = A.confusion_matrix(conf, "planted", classes)
    i = classes.index("t800")
    assert planted_m[i, i] < cb.confusion[0][i, i] and planted_m[i].sum() == cb.confusion[0][i].sum()
    lowent = [c for c in cb.conditions if c.kind == "lowent"]
    assert lowent and {c.k for c in lowent} == {2} and all(c.n_neurons == 2 for c in lowent)
    names = {c.name for c in cb.conditions}
    for c in lowent:
        assert len(D.matched_draws(cb.conditions, c.name)) == 2 and f"index+1:{c.name}" not in names
    assert (tmp_path / "abl" / "ablation_confusion.pdf").stat().st_size > 0
    assert (
        cli_main(
            ["confusion", "--ablation", str(tmp_path / "abl"), "--condition", "planted", "--condition", "class:t800"]
        )
        == 0
    )
    out = tmp_path / "abl" / "ablation_confusion-planted-class_t800.pdf"
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 0
    assert cli_main(["confusion", "--ablation", str(tmp_path / "abl"), "--condition", "nope"]) == 2
    assert "no condition 'nope'" in capsys.readouterr().err


def test_lowest_entropy_k_must_come_from_the_k_grid(tmp_path):
    with pytest.raises(ValueError, match=r"lowest_entropy_k \[4\] not in k_grid \[1, 2\]"):
        AblationCallback(out_dir=str(tmp_path), k_grid=[1, 2], lowest_entropy_k=[4])


def test_unknown_confusion_condition_fails_before_the_pass(planted, tmp_path):
    cb = AblationCallback(
        out_dir=str(tmp_path / "abl"), run_dir=str(planted["run"]), random_draws=0, confusion_conditions=["class:nope"]
    )
    with pytest.raises(ValueError, match="confusion_conditions \\['class:nope'\\] are not conditions"):
        run_test(planted, cb)
    assert not (tmp_path / "abl" / "ablation.csv").exists()


def test_chosen_confusion_conditions_are_drawn(planted, tmp_path):
    """Known ``confusion_conditions`` pass the check before the pass (it used to index the confusion
    counts before they existed) and their change in confusion is drawn."""
    cb = AblationCallback(
        out_dir=str(tmp_path / "abl"), run_dir=str(planted["run"]), random_draws=0, confusion_conditions=["class:t800"]
    )
    run_test(planted, cb)
    assert (tmp_path / "abl" / "ablation_confusion.pdf").stat().st_size > 0
