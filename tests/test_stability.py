"""Stability of class neuron sets: binomial resampling of the totals, bootstrap summary, threshold sweep,
``python -m analysis stability`` outputs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from _fake_run import planted_counts, write_fake_run

from analysis.app.cli import main
from analysis.stability import bootstrap_stability, resample_probabilities, threshold_sweep

STAB_COLS = [
    "class",
    "n_neurons",
    "mean_size",
    "size_low",
    "size_high",
    "mean_jaccard",
    "jaccard_low",
    "jaccard_high",
    "n_undefined",
    "replicates",
    "scheme",
    "seed",
    "mode",
    "top_rate",
    "filter_rate",
    "activation_bar_ratio",
    "min_activity",
]
SWEEP_COLS = [
    "top_rate",
    "filter_rate",
    "activation_bar_ratio",
    "is_reference",
    "class",
    "n_neurons",
    "reference_n_neurons",
    "jaccard_to_reference",
    "n_selected",
    "warnings",
]


def test_resample_moments_nan_and_per_site_n():
    p = torch.full((2, 4000, 2), 0.3)
    p[1, 3000:] = float("nan")
    n = torch.tensor([50, 0])
    g = torch.Generator().manual_seed(0)
    r = resample_probabilities(p, n, g)
    x = r[0, :, 0]
    assert x.mean().item() == pytest.approx(0.3, abs=0.01)
    assert x.var().item() == pytest.approx(0.3 * 0.7 / 50, rel=0.1)
    assert torch.isnan(r[..., 1]).all()  # class without clips
    assert torch.isnan(r[1, 3000:, 0]).all() and not torch.isnan(r[1, :3000, 0]).any()
    # per-site effective sizes [L, C]
    r2 = resample_probabilities(p, torch.tensor([[10, 10], [1000, 1000]]), g)
    assert r2[0, :3000, 0].var() > 20 * r2[1, :3000, 0].var()
    with pytest.raises(ValueError, match="n_eff"):
        resample_probabilities(p, torch.tensor([1, 2, 3]), g)


def test_bootstrap_separates_stable_from_unstable_sets():
    count, n, planted = planted_counts(3, 40, 3, 2000, per_class=2, seed=0)
    p = count / n
    classes = ["a", "b", "c"]
    kw = dict(top_rate=0.05, filter_rate=0.95, activation_bar_ratio=0.95, replicates=20, seed=1)
    # many clips: planted neurons dominate every replicate
    stable = bootstrap_stability(p, torch.full((3,), 2000), classes, **kw)
    assert list(stable["n_neurons"]) == [2, 2, 2]
    assert (stable["mean_jaccard"] == 1.0).all() and (stable["jaccard_low"] == 1.0).all()
    # 3 clips per class: probabilities are very noisy, sets change
    noisy = bootstrap_stability(p, torch.full((3,), 3), classes, **kw)
    assert (noisy["mean_jaccard"] < 0.95).all()
    assert (noisy["jaccard_low"] <= noisy["mean_jaccard"]).all()
    assert (noisy["mean_jaccard"] <= noisy["jaccard_high"]).all()
    assert (noisy["replicates"] == 20).all()


def test_threshold_sweep_grid_and_reference():
    count, n, _ = planted_counts(2, 200, 3, 500, per_class=3, seed=2)
    p = count / n
    ref = {"top_rate": 0.02, "filter_rate": 0.95, "activation_bar_ratio": 0.95}
    sw = threshold_sweep(p, ["a", "b", "c"], reference=ref)
    assert list(sw.columns) == SWEEP_COLS
    settings = sw[["top_rate", "filter_rate", "activation_bar_ratio"]].drop_duplicates()
    assert len(settings) == 4 * 3 * 3 and len(sw) == 36 * 4
    r = sw[sw.is_reference]
    assert len(r) == 4 and (r["jaccard_to_reference"] == 1.0).all()
    assert (r["n_neurons"] == r["reference_n_neurons"]).all()
    # larger top_rate never selects fewer neurons (same filter/bar)
    u = sw[(sw["class"] == "__all__") & (sw.filter_rate == 0.95) & (sw.activation_bar_ratio == 0.95)]
    assert u.sort_values("top_rate")["n_selected"].is_monotonic_increasing


def test_stability_cli_writes_outputs(tmp_path, capsys):
    count, n, _ = planted_counts(2, 60, 3, 300, per_class=2, seed=3)
    d = write_fake_run(tmp_path, "cremad", "analysis", count, n, n_clips=torch.tensor([30, 40, 50]))
    args = ["stability", "--run", str(d), "--replicates", "5", "--top-rate", "0.05"]
    assert main(args + ["--tensorboard", str(tmp_path / "tb")]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    st = pd.read_csv(d / "stability.csv")
    assert list(st.columns) == STAB_COLS
    assert st["class"].tolist() == ["c0", "c1", "c2"] and set(st["scheme"]) == {"clips"}
    sw = pd.read_csv(d / "threshold_sweep.csv")
    assert list(sw.columns) == SWEEP_COLS
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--scheme", "tokens", "--no-sweep"]) == 0
    assert set(pd.read_csv(d / "stability.csv")["scheme"]) == {"tokens"}
