"""Shared matched draws and the sequential (Besag–Clifford) stop: hand-computed plans, and the callback's
shared, sequential run against a brute-force run of every draw copied per set (same seeds)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analysis import ablation as A
from analysis import draws as D
from callbacks.ablation import AblationCallback, NeuronList
from _ablation_toy import run_test


def test_auto_draws_make_the_smallest_p_pass_holm():
    for m in (1, 2, 7, 24, 54, 121, 1000):
        r = D.auto_random_draws(m, 0.05)
        assert m / (1 + r) < 0.05 <= m / r  # the fewest that pass
    assert D.auto_random_draws(24, 0.05) == 480
    with pytest.raises(ValueError):
        D.auto_random_draws(0, 0.05)


def test_profile_draws_depend_only_on_seed_profile_and_number():
    pool = torch.ones(2, 10, dtype=torch.bool)
    pool[0, :3] = False
    a = D.profile_draw((2, 1), pool, 7, 3)
    assert torch.equal(a, D.profile_draw((2, 1), pool, 7, 3)) and D.size_profile(a) == (2, 1)
    assert not (a & ~pool).any()
    assert any(not torch.equal(a, D.profile_draw((2, 1), pool, 7, d)) for d in range(4))
    with pytest.raises(ValueError, match="layer 0 needs 8 random neurons but only 7"):
        D.profile_draw((8, 0), pool, 0, 0, "set x")


def test_sequential_stop_where_the_hand_count_says():
    # h = 2. Set s (target class 0, correct 5): draws' class-0 counts 6, 5, 9, 4, ... -> beats at draws 2 and 4
    # (ties count against the set) -> stops after L = 4 draws (p = 2 / 4). Set t shares the profile
    # (target class 1, correct 0): only draws with 0 correct on class 1 beat it: draw 5 alone -> never stops,
    # gets all 10. Round sizes: 2h = 4, then 4 (doubling), then the remaining 2.
    counts = torch.tensor([[6, 3], [5, 2], [9, 1], [4, 1], [8, 0], [7, 1], [7, 2], [7, 2], [7, 1], [7, 1]])
    plan = D.SequentialDraws([D.DrawSet("s", "P", [0], 10), D.DrawSet("t", "P", [1], 10)], h=2)
    sets = {"s": torch.tensor([5, 9]), "t": torch.tensor([9, 0])}
    rounds = []
    while nxt := plan.next_round():
        r = nxt["P"]
        rounds.append((r.start, r.stop))
        plan.update("P", r, counts[r.start : r.stop], sets)
    assert rounds == [(0, 4), (4, 8), (8, 10)]
    assert plan.used == {"s": 4, "t": 10}
    # a two-target set stops only when both targets have h beats; a smaller max_draws caps it
    plan = D.SequentialDraws([D.DrawSet("u", "Q", [0, 1], 10), D.DrawSet("v", "Q", [0], 3)], h=2)
    r = plan.next_round()["Q"]
    plan.update("Q", r, counts[:4], {"u": torch.tensor([6, 2]), "v": torch.tensor([0, 0])})
    # u: class 0 beats at draws 1, 2, 4 (6 <= 6, 5, 4); class 1 beats at 2, 3, 4 -> both reach 2 at draw 3
    assert plan.used == {"u": 3, "v": 3}
    # h = None: every draw in one round
    plan = D.SequentialDraws([D.DrawSet("s", "P", [0], 10)], h=None)
    assert plan.next_round() == {"P": range(0, 10)}


def test_matched_draws_of_old_descriptions_follow_the_parent():
    conds = [dict(name="class:a", kind="class")] + [
        dict(name=f"random:class:a:{d}", kind="random", parent="class:a", draw=d) for d in (1, 0)
    ]
    assert [c["draw"] for c in D.matched_draws(conds, "class:a")] == [0, 1]
    with pytest.raises(ValueError, match="no condition 'nope'"):
        D.matched_draws(conds, "nope")


def _hand_stop(full: pd.DataFrame, own: pd.Series, targets: list[str], h: int, r: int) -> int:
    """Where the Besag–Clifford stop ends a set, from all ``r`` of its draws (brute force, one per row)."""
    beats = {c: 0 for c in targets}
    for d in range(r):
        for c in targets:
            beats[c] += int(full.loc[(d, c)] <= own[c])
        if all(b >= h for b in beats.values()):
            return d + 1
    return r


@pytest.mark.slow
def test_shared_sequential_draws_equal_separate_draws_of_the_same_seeds(planted, tmp_path):
    kw = dict(
        run_dir=str(planted["run"]),
        random_draws=12,
        seed=5,
        k_grid=[1, 2],
        lowest_entropy_k=[1],
        figures=False,
        neuron_lists=[
            NeuronList("planted", [[0, 1]], ["t800"]),  # the planted neuron
            NeuronList("inert", [[0, 6]], ["t400"]),
        ],
    )  # a neuron nothing reads
    full = AblationCallback(out_dir=str(tmp_path / "full"), share_draws=False, draws_stop_after=None, **kw)
    seq = AblationCallback(out_dir=str(tmp_path / "seq"), share_draws=True, draws_stop_after=2, **kw)
    run_test(planted, full)
    run_test(planted, seq)
    tf, ts = full.table, seq.table
    sets = [c for c in seq.conditions if c.profile is not None and c.kind != "random"]
    assert len(sets) >= 4 and len({c.profile for c in sets}) < len(sets)  # some sets really share
    stopped = 0
    for s in sets:
        mine, theirs = D.matched_draws(seq.conditions, s.name), D.matched_draws(full.conditions, s.name)
        assert len(theirs) == 12 and [c.name for c in theirs] == [f"random:{s.name}:{d}" for d in range(12)]
        for a, b in zip(mine, theirs):
            assert torch.equal(a.mask, b.mask) and a.draw == b.draw
            x = ts[ts.condition == a.name].set_index("class")[["correct", "delta"]]
            y = tf[tf.condition == b.name].set_index("class")[["correct", "delta"]]
            assert x.equals(y), (s.name, a.name)  # every class's change, exactly
        per = (
            tf[tf.condition.isin([c.name for c in theirs])]
            .assign(d=lambda t: t.condition.str.rsplit(":", n=1).str[-1].astype(int))
            .set_index(["d", "class"])["correct"]
        )
        own = tf[tf.condition == s.name].set_index("class")["correct"]
        assert len(mine) == s.draws_used == _hand_stop(per, own, s.target, 2, 12), s.name
        stopped += s.draws_used < 12
    assert stopped  # the stop did end some set early
    planted_set, inert = (next(c for c in sets if c.name == n) for n in ("planted", "inert"))
    assert planted_set.profile == inert.profile  # one neuron at site 0: the same draws
    assert planted_set.draws_used == 12  # no random draw hurts t800 like its planted neuron
    assert inert.draws_used == 2  # every draw ties with the inert neuron's change (0): stop after h = 2
    n_random = lambda cb: sum(c.kind == "random" for c in cb.conditions)  # noqa: E731
    assert n_random(seq) < n_random(full)
    # the same rows, values exactly (lost / gained are an object column where later rounds left them empty)
    pd.testing.assert_frame_equal(
        ts[ts.kind != "random"].reset_index(drop=True),
        tf[tf.kind != "random"].reset_index(drop=True),
        check_dtype=False,
        check_exact=True,
    )
    # the summary pairs each set with its matched draws
    row = seq.summary[(seq.summary.group == "planted") & (seq.summary["class"] == "t800")].iloc[0]
    assert row.p_random == 0.0 and row.random_group == f"random:{planted_set.profile}"
    assert A.describe_conditions([planted_set])[0]["draws_used"] == 12
