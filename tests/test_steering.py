"""SteeringCallback on the planted toy (tests/_ablation_toy.py): gain 1 is the unablated model exactly,
gain 0 equals the ablation's zeroing, any gain equals a brute-force pass with the channels scaled by hand,
every gain has its random band and the exact Monte Carlo p-value; the steering maths on hand counts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analysis import steering as G
from analysis.ablation import Condition
from callbacks import AblationCallback, SteeringCallback
from lightning_modules.audio_classifier import AudioClassifier
from lightning_modules.encoders.base import site_view
from _ablation_toy import CLASSES, run_test

GAINS = [0.0, 0.5, 1.0, 2.0, 4.0]
R = 4


@torch.no_grad()
def _probabilities(model: AudioClassifier, audio, scale: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Softmax of the model on ``audio`` with site l's channels multiplied by ``scale[l]`` (brute force)."""
    enc, handles = model.encoder, []
    for l, s in (scale or {}).items():

        def hook(m, i, out, s=s):
            return (site_view(out, enc.channel_axis) * s).movedim(-1, enc.channel_axis)

        handles.append(enc.get_submodule(enc.neuron_sites[l]).register_forward_hook(hook))
    try:
        return model.eval()(audio).float().softmax(-1)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.slow
def test_steering_curves_against_baseline_ablation_and_brute_force(planted, tmp_path) -> None:
    cb = SteeringCallback(
        out_dir=str(tmp_path / "steer"),
        run_dir=str(planted["run"]),
        gains=GAINS,
        random_draws=R,
        seed=3,
        conditions_per_pass=5,
        task="toy",
    )
    model = run_test(planted, cb)[0]
    t = pd.read_csv(tmp_path / "steer" / "steering.csv")
    assert list(t.columns[:8]) == [
        "task",
        "class",
        "gain",
        "baseline",
        "on_target",
        "random_lo",
        "random_hi",
        "p_value",
    ]
    assert (tmp_path / "steer" / "steering.pdf").is_file()
    labels = planted["labels"]
    clean = _probabilities(model, planted["audio"])
    assert set(t["class"]) == set(CLASSES) - {"noise"}  # noise has no set (nothing fires for it): no rows
    for cls in set(t["class"]):
        ci = CLASSES.index(cls)
        p = t[(t["class"] == cls) & (t.metric == "probability")].set_index("gain")
        # g = 1 is the unablated model: the same value as the baseline, itself the plain model's probability
        assert p.loc[1.0, "on_target"] == p.loc[1.0, "baseline"]
        if p.loc[1.0, "set_size"] > 0:  # the random band at g = 1 is the baseline too (to its 12-digit rounding)
            assert (
                p.loc[1.0, "random_lo"] == p.loc[1.0, "random_hi"] == pytest.approx(p.loc[1.0, "baseline"], abs=1e-12)
            )
        assert p.loc[1.0, "baseline"] == pytest.approx(float(clean[labels == ci, ci].double().mean()), abs=1e-6)
    # every class with a set: random bands at g != 1 and the exact test's p in {1/(R+1), ..., 1}
    steered = t[(t.gain != 1.0) & (t.set_size > 0)]
    assert len(steered) and steered[["random_lo", "random_hi"]].notna().all().all()
    assert (steered.random_draws == R).all()
    assert set((steered.p_value * (R + 1)).round(9)) <= {float(k) for k in range(1, R + 2)}
    # g = 0 is the ablation's zeroing: the same recall of each class set's class
    abl = AblationCallback(out_dir=str(tmp_path / "abl"), run_dir=str(planted["run"]), random_draws=0, figures=False)
    run_test(planted, abl)
    a = pd.read_csv(tmp_path / "abl" / "ablation.csv")
    rec = t[(t.metric == "recall") & (t.gain == 0.0)].set_index("class")
    for cls in rec.index:
        row = a[(a.condition == f"class:{cls}") & (a["class"] == cls)]
        assert rec.loc[cls, "on_target"] == pytest.approx(float(row.accuracy.iloc[0]), abs=1e-12)
    # g = 4 on one class set against a brute-force pass with its channels multiplied by 4 by hand
    target = "t800"
    ci = CLASSES.index(target)
    mask = next(c.mask for c, g in cb.pairs if c.name == f"class:{target}")
    scale = {l: torch.where(mask[l, :n], 4.0, 1.0) for l, n in enumerate(model.encoder.site_neurons) if mask[l].any()}
    brute = _probabilities(model, planted["audio"], scale)
    p4 = t[(t["class"] == target) & (t.metric == "probability") & (t.gain == 4.0)].iloc[0]
    assert p4.on_target == pytest.approx(float(brute[labels == ci, ci].double().mean()), abs=1e-5)
    r0 = t[(t["class"] == target) & (t.metric == "recall") & (t.gain == 0.0)].iloc[0]
    assert r0.on_target <= 1 / len(CLASSES) < r0.baseline  # zeroing the planted set removes its class


def test_steering_table_on_hand_counts() -> None:
    """Two classes, one class set with two random draws, gains 0 and 2 (+1 = baseline), counts by hand."""
    m = torch.tensor([[True, False, False]])
    cset = Condition("class:a", "class", m, ["a"])
    r0 = Condition("random:class:a:0", "random", torch.tensor([[False, True, False]]), ["a"], parent="class:a")
    r1 = Condition("random:class:a:1", "random", torch.tensor([[False, False, True]]), ["a"], parent="class:a")
    pairs = G.steering_conditions([Condition("baseline", "baseline", m & False), cset, r0, r1], [0, 1, 2])
    assert [(c.name, g) for c, g in pairs] == [
        ("class:a", 0.0),
        ("class:a", 2.0),
        ("random:class:a:0", 0.0),
        ("random:class:a:0", 2.0),
        ("random:class:a:1", 0.0),
        ("random:class:a:1", 2.0),
    ]
    n = torch.tensor([4, 4])
    correct = torch.tensor([[3, 4], [1, 4], [4, 2], [3, 4], [2, 4], [3, 3], [3, 4]])  # rows: baseline, pairs
    prob = torch.zeros(7, 2, 2, dtype=torch.float64)
    t = G.steering_table("task", ["a", "b"], pairs, [0, 1, 2], correct, n, prob)
    rec = t[t.metric == "recall"].set_index("gain")
    assert rec.loc[1.0, "on_target"] == rec.loc[1.0, "baseline"] == 0.75
    assert rec.loc[0.0, "on_target"] == 0.25 and rec.loc[2.0, "on_target"] == 1.0
    # g = 0: random recalls 0.75 and 0.75 → none as far from 0.75 as 0.25: p = 1 / 3
    assert rec.loc[0.0, "p_value"] == pytest.approx(1 / 3)
    # g = 2: random recalls 0.5 and 0.75; 0.5 is 0.25 from the baseline, as far as 1.0: p = 2 / 3
    assert rec.loc[2.0, "p_value"] == pytest.approx(2 / 3)
    off = t[t.metric == "off_target_recall"].set_index("gain")
    assert off.loc[2.0, "on_target"] == 0.5 and off.loc[1.0, "baseline"] == 1.0
    with pytest.raises(ValueError, match="gains"):
        G.check_gains([1.0])
