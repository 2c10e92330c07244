"""The notebook API (``from analysis import open_run``) against the files of a run, read here with torch,
pandas and soundfile directly: the neuron table (probabilities, entropy by hand, selection, class-set stability
and ablation effects), the top clips, the audio players (the data's own samples), the figures' numbers
(Jaccard by hand, recall changes of ablation.csv), clear errors, and that nothing is written."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from analysis import open_run
from analysis.app.notebook.folders import NotARunError
from analysis.draws import matched_draws
from analysis.runs.read import read_ablation_conditions

from _fake_run import planted_counts, write_fake_run

TASK, MODEL = "synth_octave_sine", "crepe_tiny"


def _raw(path: Path):
    return torch.load(path, weights_only=True)


def _entropy_by_hand(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (natural log) of each row of ``p`` normalised over classes; NaN for all-zero rows."""
    s = p.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = p / s
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(1)
    return np.where(s[:, 0] > 0, h, np.nan)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- fast: a run folder alone
def test_a_run_folder_opens_alone_and_its_table_matches_the_file(tmp_path):
    count, n, _ = planted_counts(2, 8, 3, 50, per_class=1)
    d = write_fake_run(tmp_path, "toy", "m", count, n, classes=["a", "b", "c"], site_neurons=[8, 5])
    run = open_run(d)
    assert run.tasks == ["toy"] and run.models == ["m"]
    df = run.neurons()
    p = _raw(d / "over_zero.pt").numpy()
    present = [(l, i) for l in range(2) for i in range(8) if not np.isnan(p[l, i]).all()]
    assert list(zip(df["layer"], df["neuron"])) == present and len(df) == 13
    got = df[["p_a", "p_b", "p_c"]].to_numpy()
    want = np.stack([p[l, i] for l, i in present])
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(df["entropy"].to_numpy(), _entropy_by_hand(want.astype(np.float64)), rtol=1e-5)
    assert not df["selected"].any() and (df["classes"] == "").all()  # no neurons.csv yet
    with pytest.raises(FileNotFoundError, match="no ablation folder"):
        run.plot_ablation_matrix()


def test_errors_name_the_folder_and_the_choices(tmp_path):
    with pytest.raises(NotARunError, match="neither a pipeline output folder"):
        open_run(tmp_path)
    count, n, _ = planted_counts(1, 4, 2, 20, per_class=1)
    run = open_run(write_fake_run(tmp_path, "toy", "m", count, n))
    with pytest.raises(KeyError, match=r"unknown task 'nope'; tasks: \['toy'\]"):
        run.neurons("nope")
    with pytest.raises(ValueError, match="expected 'layer:neuron'"):
        run.top_clips("5-23")


# ----------------------------------------------------------------------------- slow: a whole pipeline output
@pytest.mark.slow
def test_neuron_table_matches_the_run_files(notebook_run):
    run = open_run(notebook_run)
    assert run.tasks == sorted(["synth_octave_sine", "synth_octave_saw"])
    assert run.models == ["crepe_tiny", "crepe_tiny_untrained"]
    d = notebook_run / "runs" / f"{TASK}_{MODEL}"
    df = run.neurons(TASK, MODEL)
    classes = (d / "classes.txt").read_text().split()
    p = _raw(d / "over_zero.pt").numpy()
    assert len(df) == sum(json.loads((d / "manifest.json").read_text())["site_neurons"])
    rows = p[df["layer"], df["neuron"]]
    np.testing.assert_allclose(df[[f"p_{c}" for c in classes]].to_numpy(), rows)
    np.testing.assert_allclose(df["entropy"].to_numpy(), _entropy_by_hand(rows.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(df["normalised_entropy"], df["entropy"] / np.log(len(classes)), rtol=1e-5)

    sel = pd.read_csv(d / "neurons.csv", keep_default_na=False)
    got = df[df["selected"]].sort_values("rank")
    assert list(zip(got["layer"], got["neuron"], got["rank"])) == list(zip(sel["layer"], sel["neuron"], sel["rank"]))
    assert list(got["classes"]) == list(sel["classes"])

    abl = pd.read_csv(notebook_run / "ablation" / f"{TASK}_{MODEL}" / "ablation.csv", keep_default_na=False)
    conds = read_ablation_conditions(notebook_run / "ablation" / f"{TASK}_{MODEL}")["conditions"]
    stab = pd.read_csv(d / "stability.csv").set_index("class")
    single = got[got["n_classes"] == 1]
    assert len(single)
    for _, r in single.iterrows():
        c = r["classes"]
        assert r["set_size"] == sum(c in cs.split(";") for cs in sel["classes"])
        assert r["set_stability"] == pytest.approx(stab.loc[c, "mean_jaccard"])
        own = abl[(abl["condition"] == f"class:{c}") & (abl["class"] == c)]
        assert r["ablation_delta"] == pytest.approx(float(own["delta"].iloc[0]))
        names = [m["name"] for m in matched_draws(conds, f"class:{c}")]  # its (shared) matched draws, in order
        own_draws = abl[abl["condition"].isin(names) & (abl["class"] == c)].set_index("condition")["delta"]
        draws = np.array([float(own_draws[n]) for n in names])
        assert len(draws) == 3
        assert r["random_delta_mean"] == pytest.approx(draws.mean())
        assert (r["random_delta_lo"], r["random_delta_hi"]) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
        assert bool(r["ablation_specific"]) == (r["ablation_delta"] < r["random_delta_lo"])
    assert df.loc[df["n_classes"] != 1, "set_size"].isna().all()


@pytest.mark.slow
def test_top_clips_and_players_come_from_the_files_and_the_audio(notebook_run):
    run = open_run(notebook_run)
    d = notebook_run / "runs" / f"{TASK}_{MODEL}"
    unit = run.neurons(TASK, MODEL).query("selected").sort_values("rank").iloc[0]
    top = run.top_clips(unit)
    raw = _raw(d / "top_clips.pt")
    l, n = int(unit["layer"]), int(unit["neuron"])
    keep = raw["index"][l, n] >= 0
    assert list(top["index"]) == raw["index"][l, n][keep].tolist()
    np.testing.assert_allclose(top["score"], raw["score"][l, n][keep].numpy())
    index = pd.read_csv(d / "index.csv", keep_default_na=False).set_index("index")
    assert list(top["file_name"]) == [index.loc[i, "file_name"] for i in top["index"]]

    players = run.listen(unit, excerpt_seconds=None)
    html = players._repr_html_()
    wavs = re.findall(r"data:audio/wav;base64,([A-Za-z0-9+/=]+)", html)
    assert len(wavs) == len(top) == 3
    for b64, (_, row) in zip(wavs, top.iterrows()):
        got, sr = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="float32")
        want, file_sr = sf.read(
            notebook_run.parent / "evar" / "work" / "16k" / TASK / row["file_name"], dtype="float32"
        )
        assert sr == file_sr == 16000 and len(got) == len(want)
        np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=1 / 32767)
    half = run.listen(unit, clips=1, excerpt_seconds=0.25)
    assert len(half.clips) == 1 and len(half.clips[0].audio) == 4000

    page = run.gallery(task=TASK, model=MODEL)
    gallery = notebook_run / "gallery" / f"{TASK}_{MODEL}"
    shown = json.loads((gallery / "gallery.json").read_text())["shown"]
    assert Path(page) == gallery / "index.html" and page.pages == len(shown) > 0
    assert (
        Path(run.gallery(shown[0], task=TASK, model=MODEL))
        == gallery / "neurons" / f"l{shown[0].replace(':', '_n')}.html"
    )
    hidden = next(u for u in run.neurons(TASK, MODEL)["unit"] if u not in shown)
    with pytest.raises(KeyError, match=f"unit {hidden} has no page"):
        run.gallery(hidden, task=TASK, model=MODEL)


@pytest.mark.slow
def test_figures_draw_the_numbers_of_the_files_and_nothing_is_written(notebook_run):
    before = _snapshot(notebook_run)
    open_before = set(plt.get_fignums())  # an earlier test in this process may have left its own open
    run = open_run(notebook_run)
    d = notebook_run / "runs" / f"{TASK}_{MODEL}"
    classes = (d / "classes.txt").read_text().split()
    sel = pd.read_csv(d / "neurons.csv", keep_default_na=False)
    sets = {
        c: {(a, b) for a, b, cs in zip(sel["layer"], sel["neuron"], sel["classes"]) if c in cs.split(";")}
        for c in classes
    }
    jac = np.array(
        [
            [len(sets[a] & sets[b]) / len(sets[a] | sets[b]) if sets[a] | sets[b] else np.nan for b in classes]
            for a in classes
        ]
    )
    fig = run.plot_within_task(TASK, MODEL)
    np.testing.assert_allclose(np.ma.filled(fig.axes[0].images[0].get_array(), np.nan), jac, rtol=1e-6)

    abl = pd.read_csv(notebook_run / "ablation" / f"{TASK}_{MODEL}" / "ablation.csv", keep_default_na=False)
    fig = run.plot_ablation_matrix(TASK, MODEL)
    shown = [c for c in classes if f"class:{c}" in set(abl["condition"])]
    want = np.array(
        [
            [float(abl[(abl["condition"] == f"class:{a}") & (abl["class"] == b)]["delta"].iloc[0]) for b in classes]
            for a in shown
        ]
    )
    np.testing.assert_allclose(np.ma.filled(fig.axes[0].images[0].get_array(), np.nan), want)

    figures = [
        run.plot_cross_task("synth_octave_sine", "synth_octave_saw", MODEL),
        run.plot_compare_within_task(TASK),
        run.plot_compare_cross_task("synth_octave_sine", "synth_octave_saw"),
        run.plot_entropy_distribution(),
        run.plot_k_curve(TASK, MODEL),
        run.plot_confusion(TASK, MODEL),
        run.plot_ablation_vs_random(TASK, MODEL),
        run.plot_probabilities("0:0", TASK, MODEL),
    ]
    assert all(f.axes for f in figures)
    assert set(plt.get_fignums()) == open_before  # handed to the notebook, not left open in pyplot
    run.class_sets(TASK, MODEL), run.probe(TASK, MODEL), run.report(), run.listen("0:0", TASK, MODEL, clips=1)
    assert _snapshot(notebook_run) == before
