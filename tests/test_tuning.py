"""Tuning curves: per-class activation sums against brute force, a planted pitch unit recovered from a
pure-tone stimulus set through the real counting pass, the stimulus sets themselves (determinism, the
parameter each one fixes), the tuning table and the range claims against hand counts."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from _tuning_models import PitchUnits
from analysis import tuning as TU
from analysis.app.tuning import class_figure, range_rows, tuning_from_run
from analysis.runs.read import read_tuning_curves, read_tuning_table
from analysis.runs.write import write_neurons
from callbacks import ActivationStatsCallback
from datamodules import EVARDataModule
from datamodules.stimuli import DIMENSIONS, write_stimuli
from lightning_modules import FeatureExtractor
from _counting import ToyEncoder
from _stats_toy import ToyDataModule, ToyExtractor

PITCHES = [48.0, 52.0, 56.0, 58.0, 60.0, 62.0, 64.0, 66.0, 68.0, 72.0]


def _trainer(cb: ActivationStatsCallback) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_class_sums_match_brute_force(tmp_path: Path) -> None:
    dm, model = ToyDataModule(n=7), ToyExtractor()
    cb = ActivationStatsCallback(out_dir=str(tmp_path), tokens="patches", top_k=0, class_sums=True)
    _trainer(cb).predict(model, datamodule=dm, return_predictions=False)
    stats = torch.load(tmp_path / "toy_task_toy" / "stats.pt", weights_only=False)
    enc: ToyEncoder = model.encoder
    enc.record = []
    with torch.inference_mode():
        enc(dm.audio, dm.lengths)
    ref = torch.zeros(2, 6, 3, dtype=torch.float64)
    for l, act, pos in enc.record:  # explicit loop over rows and counted positions
        for r in range(act.shape[0]):
            b = int(pos.clip[r])
            for p in range(act.shape[1]):
                if bool(pos.valid[r, p]) and not bool(pos.special[p]):
                    ref[l, : act.shape[-1], int(dm.labels[b])] += act[r, p].double()
    assert torch.allclose(stats["act_sum_class"], ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(stats["act_sum_class"].sum(-1), stats["act_sum"], rtol=1e-9, atol=1e-9)


def _pitch_run(tmp_path: Path, devices: int = 1) -> Path:
    write_stimuli(tmp_path / "evar", "pitch", seed=3, values=PITCHES, clips_per_value=3, duration=0.5, source="sine")
    dm = EVARDataModule(evar_root=str(tmp_path / "evar"), task="tuning_pitch", batch_size=4)
    cb = ActivationStatsCallback(out_dir=str(tmp_path / "runs"), top_k=0, features=False, class_sums=True)
    _trainer(cb).predict(FeatureExtractor(PitchUnits()), datamodule=dm, return_predictions=False)
    return tmp_path / "runs" / "tuning_pitch_pitch_units"


@pytest.mark.slow
def test_planted_pitch_unit_recovered(tmp_path: Path) -> None:
    """Unit 0 fires only above MIDI 61 and unit 1 only within MIDI 57–63 (pure tones): the curves are the
    planted steps exactly; preferred value and half-maximum width follow from the planted edges (the
    half-maximum crossing lies midway between the grid values around each edge)."""
    table = tuning_from_run(_pitch_run(tmp_path), "pitch", tmp_path / "tuning")
    cur = read_tuning_curves(tmp_path / "tuning", "pitch")
    x = np.array(PITCHES)
    assert cur["values"].tolist() == PITCHES
    assert cur["p_active"][0, 0].tolist() == (x > 61).astype(float).tolist()
    assert cur["p_active"][0, 1].tolist() == ((x > 57) & (x < 63)).astype(float).tolist()
    assert cur["p_active"][0, 2].tolist() == [0.0] * len(x)
    t = read_tuning_table(tmp_path / "tuning", "pitch")
    assert list(t.columns[:5]) == ["unit", "site", "preferred_value", "bandwidth", "selectivity"]
    assert t.equals(table) or np.allclose(t["preferred_value"], table["preferred_value"], equal_nan=True)
    step, band, never = (t.iloc[i] for i in range(3))
    above = x[x > 61]
    assert step["preferred_value"] == (above[0] + above[-1]) / 2  # centre of the plateau 62 … 72
    assert step["bandwidth"] == x[-1] - (60 + 62) / 2 and not step["bounded"]  # 61 … end of the grid
    assert band["preferred_value"] == 60.0  # the plateau 58 … 62
    assert band["bandwidth"] == (62 + 64) / 2 - (56 + 58) / 2 and band["bounded"]  # 57 … 63
    assert band["selectivity"] == pytest.approx((1 - 2 / 9) / (1 + 2 / 9))  # others: 2 of 9 at 1
    assert math.isnan(never["preferred_value"]) and never["selectivity"] == 0.0
    # the mean curve: each value's mean activation over its counted frames, from the same pass
    assert torch.all(cur["mean"][0, 0, x > 61] > 0) and torch.all(cur["mean"][0, 0, x < 61] < 0)


@pytest.mark.slow
def test_class_figure_and_range_claims(tmp_path: Path) -> None:
    """A task run whose class ``octave_4`` selected unit 0 and ``octave_3`` units 1 and 2: counted by hand
    (unit 0 prefers MIDI 67, in octave 4 = [60, 72); unit 1 prefers 60, in octave 4 too, not in octave 3 =
    [48, 60); unit 2 never fires, so it has no preferred value); the random comparison is over the two units
    that have one."""
    run = _pitch_run(tmp_path)
    tuning_from_run(run, "pitch", tmp_path / "tuning")
    task_run = tmp_path / "task"
    task_run.mkdir()
    (task_run / "classes.txt").write_text("octave_3\noctave_4\n")
    torch.save(
        {
            "count": torch.zeros(1, 3, 2, dtype=torch.long),
            "n_tokens": torch.ones(2, dtype=torch.long),
            "n_clips": torch.ones(2, dtype=torch.long),
            "sites": ["units"],
            "classes": ["octave_3", "octave_4"],
            "site_neurons": [3],
        },
        task_run / "stats.pt",
    )
    neurons = [[torch.tensor([1, 2])], [torch.tensor([0])]]
    write_neurons(task_run, pd.DataFrame({"class": ["octave_3", "octave_3", "octave_4"]}), neurons, {})
    pdf = class_figure(tmp_path / "tuning", "pitch", "octaves", task_run)
    assert pdf.is_file() and pdf.with_suffix(".png").is_file()
    rows = {r["class"]: r for r in range_rows("m", "pitch", "octaves", tmp_path / "tuning", task_run)}
    r4, r3 = rows["octave_4"], rows["octave_3"]
    assert (r4["in_range"], r4["n_units"], r4["fraction"], r4["set_size"]) == (1, 1, 1.0, 1)
    assert (r4["range_lo"], r4["range_hi"]) == (60.0, 72.0)
    assert r4["random_mean"] == 1.0 and r4["p_value"] == 1.0  # 67 and 60 both lie in octave 4
    assert (r3["in_range"], r3["n_units"], r3["set_size"]) == (0, 1, 2)
    assert r3["random_mean"] == 0.0 and r3["p_value"] == 1.0


def test_range_share_against_enumeration() -> None:
    """The hypergeometric p-value and interval against enumerating every subset of a small population."""
    from itertools import combinations

    pop = [1] * 4 + [0] * 6
    hits = [sum(pop[i] for i in s) for s in combinations(range(10), 3)]
    r = TU.range_share(2, 3, 4, 10)
    assert r["p_value"] == pytest.approx(sum(h >= 2 for h in hits) / len(hits), abs=1e-12)
    assert r["random_mean"] == 0.4
    lo, hi = TU.wilson_interval(2, 3)
    assert (r["ci_lo"], r["ci_hi"]) == (lo, hi) and lo < 2 / 3 < hi


def test_curve_summary_categorical_and_errors() -> None:
    s = TU.curve_summary([[0.1, 0.9, 0.1, 0.9]], [0, 11, 24, 40], categorical=True)
    assert s["preferred_value"].tolist() == [11.0] and math.isnan(s["bandwidth"][0])
    with pytest.raises(ValueError, match="ascending"):
        TU.curve_summary([[0, 1]], [2, 1])


def _rms_db(x: np.ndarray) -> float:
    s = np.abs(x) > 1e-3 * np.abs(x).max()
    return 20 * np.log10(np.sqrt(np.mean(x[s] ** 2)))


def _centroid(x: np.ndarray, sr: int) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float((f * p).sum() / p.sum())


@pytest.mark.slow
def test_stimuli_fix_their_parameter_and_are_deterministic(tmp_path: Path) -> None:
    a = write_stimuli(tmp_path / "a", "loudness", seed=1, values=[-40, -20], clips_per_value=2, duration=0.3)
    b = write_stimuli(tmp_path / "b", "loudness", seed=1, values=[-40, -20], clips_per_value=2, duration=0.3)
    c = write_stimuli(tmp_path / "c", "loudness", seed=2, values=[-40, -20], clips_per_value=2, duration=0.3)
    wav = "work/16k/tuning_loudness/loudness_-20/loudness_-20_001.wav"
    data = [(tmp_path / x / wav).read_bytes() for x in "abc"]
    assert data[0] == data[1] != data[2]
    assert a.read_text() == b.read_text() != "" and c.is_file()
    for v in (-40, -20):
        x, _ = sf.read(tmp_path / "a" / f"work/16k/tuning_loudness/loudness_{v}/loudness_{v}_000.wav")
        assert _rms_db(x) == pytest.approx(v, abs=0.2)  # 16-bit rounding only
    write_stimuli(tmp_path / "d", "centroid", seed=0, values=[500, 2000], clips_per_value=2, duration=0.3)
    for v in (500, 2000):
        for k in range(2):
            x, sr = sf.read(tmp_path / "d" / f"work/16k/tuning_centroid/centroid_{v}/centroid_{v}_00{k}.wav")
            assert _centroid(x, sr) == pytest.approx(v, rel=0.25)
    write_stimuli(tmp_path / "e", "onset_rate", seed=0, values=[2, 8], clips_per_value=1, duration=1.0)
    for v in (2, 8):
        x, sr = sf.read(tmp_path / "e" / f"work/16k/tuning_onset_rate/onset_rate_{v}/onset_rate_{v}_000.wav")
        rms = np.sqrt((x[: len(x) // 80 * 80].reshape(-1, 80) ** 2).mean(1))  # 5 ms frames
        env = rms > 0.1 * rms.max()
        onsets = int((env[1:] & ~env[:-1]).sum() + env[0])
        assert abs(onsets - v) <= 1  # a burst cut by the clip's end may be missed
    with pytest.raises(ValueError, match="Unknown stimulus dimension"):
        write_stimuli(tmp_path / "f", "colour", seed=0)
    assert set(DIMENSIONS) >= {
        "pitch",
        "loudness",
        "centroid",
        "noise_bandwidth",
        "onset_rate",
        "inharmonicity",
        "instrument",
    }
