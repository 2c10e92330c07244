"""ConditionSpec, the one home of an ablation run's condition-list options: the AblationCallback's
arguments of the same names build it (and cannot drift from it), it checks and normalises them, and the
callback's pieces (confusion counts of chosen conditions) behave as the callback did."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from analysis.ablation import Condition, ConditionSpec, NeuronList
from callbacks.ablation import AblationCallback
from callbacks.ablation_outputs import confusion_of

FIELDS = [f.name for f in dataclasses.fields(ConditionSpec)]


def test_every_spec_option_is_an_argument_of_the_callback_with_the_same_default():
    params = inspect.signature(AblationCallback.__init__).parameters
    assert set(FIELDS) <= set(params), sorted(set(FIELDS) - set(params))
    spec_defaults = {f.name: f.default for f in dataclasses.fields(ConditionSpec)}
    for name in FIELDS:
        if name == "random_draws":  # the callback resolves 'auto' (its default) to a count
            assert params[name].default == "auto"
            continue
        # the callback's None for a list is the spec's empty sequence
        assert params[name].default in (spec_defaults[name], None), name


def test_the_callback_hands_every_option_to_its_spec(tmp_path):
    given = dict(
        class_sets=False,
        neuron_lists=[{"name": "l", "neurons": [[0, 1]], "targets": ["a"]}],
        shared=[("a", "b")],
        k_grid=[8, 2, 8],
        topk_classes=["a"],
        lowest_entropy_k=[8],
        lowest_entropy_draws=3,
        random_draws=7,
        random_for_topk=False,
        index_plus_one=True,
        seed=11,
        class_aliases={"A": "a"},
        share_draws=False,
        selectors=["contrast", "contrast", "magnitude"],
    )
    assert set(given) == set(FIELDS)
    cb = AblationCallback(out_dir=str(tmp_path), **given)
    expected = dict(
        given,
        neuron_lists=[NeuronList("l", [[0, 1]], ["a"])],
        shared=[["a", "b"]],
        k_grid=[2, 8],
        selectors=["contrast", "magnitude"],
    )
    assert {n: getattr(cb.spec, n) for n in FIELDS} == expected


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(random_draws=-1), "random_draws must be >= 0 or 'auto', got -1"),
        (dict(random_draws="many"), "random_draws must be >= 0 or 'auto', got 'many'"),
        (dict(k_grid=[3, 0]), r"k_grid sizes must be >= 1, got \[3, 0\]"),
        (dict(k_grid=[2], lowest_entropy_k=[2, 5]), r"lowest_entropy_k \[5\] not in k_grid \[2\]"),
        (dict(lowest_entropy_draws=-2), "lowest_entropy_draws must be >= 0, got -2"),
    ],
)
def test_bad_options_name_themselves_in_the_spec_and_in_the_callback(tmp_path, kw, msg):
    with pytest.raises(ValueError, match="^" + msg):
        ConditionSpec(**kw)
    with pytest.raises(ValueError, match="^AblationCallback: " + msg):
        AblationCallback(out_dir=str(tmp_path), **kw)


def test_auto_draws_must_be_resolved_before_the_count_is_used():
    spec = ConditionSpec(random_draws="auto", lowest_entropy_draws=2)
    with pytest.raises(ValueError, match="must be resolved"):
        spec.draws()
    resolved = spec.with_draws(9)
    assert resolved.draws() == 9 and resolved.draws_of("class") == 9 and resolved.draws_of("lowent") == 2
    assert ConditionSpec(random_draws=4).draws_of("lowent") == 4  # no lowest_entropy_draws: random_draws
    assert spec.random_draws == "auto"  # with_draws leaves the original alone


def test_confusion_of_picks_the_named_conditions_and_lists_the_known_ones():
    m = torch.zeros(1, 1, dtype=torch.bool)
    conds = [Condition("baseline", "baseline", m), Condition("class:a", "class", m), Condition("s", "explicit", m)]
    confusion = torch.arange(3 * 2 * 2).view(3, 2, 2)
    got = confusion_of(conds, confusion, ["baseline", "s"])
    assert list(got) == ["baseline", "s"]
    assert got["baseline"].tolist() == [[0, 1], [2, 3]] and got["s"].tolist() == [[8, 9], [10, 11]]
    with pytest.raises(
        ValueError, match=r"\['nope'\] are not conditions of this run; known: \['baseline', 'class:a', 's'\]"
    ):
        confusion_of(conds, confusion, ["nope"])
