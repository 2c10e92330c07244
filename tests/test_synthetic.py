"""Synthetic EVAR-format tasks (datamodules/synthetic.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from analysis.runs.atomic import OutputExistsError
from conftest import REPO_ROOT, SYNTHETIC_CLIPS_PER_CLASS, SYNTHETIC_DURATION, SYNTHETIC_TASKS
from datamodules import EVARDataModule
from datamodules.synthetic import write_task


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    kw = dict(clips_per_class=3, duration=0.25)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_task(tmp_path / name, "synth_octave_saw", seed, **kw)
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys()
    wavs = [k for k in a if k.endswith(".wav")]
    assert len(wavs) == 15 and all(a[k] != c[k] for k in wavs)


def test_tasks_differ_with_same_seed(tmp_path):
    write_task(tmp_path, "synth_octave_sine", 0, clips_per_class=3, duration=0.25)
    write_task(tmp_path, "synth_octave_saw", 0, clips_per_class=3, duration=0.25)
    sine = sf.read(tmp_path / "work/16k/synth_octave_sine/octave_4/octave_4_000.wav")[0]
    saw = sf.read(tmp_path / "work/16k/synth_octave_saw/octave_4/octave_4_000.wav")[0]
    assert not np.array_equal(sine, saw)


def test_layout_and_datamodule_without_other_arguments(synthetic_root):
    for task in SYNTHETIC_TASKS:
        meta = synthetic_root / "evar" / "metadata"
        df = pd.read_csv(meta / f"{task}.csv")
        assert {"file_name", "label", "split"} <= set(df.columns)
        assert yaml.safe_load((meta / f"{task}.yaml").read_text())["unit_sec"] == SYNTHETIC_DURATION
        dm = EVARDataModule(evar_root=str(synthetic_root), task=task)
        dm.setup()
        assert dm.classes == [f"octave_{o}" for o in range(2, 7)]
        n = SYNTHETIC_CLIPS_PER_CLASS
        assert [len(dm.datasets[s]) for s in ("train", "valid", "test")] == [5 * (n - 2), 5, 5]
        dm.check_files()
        info = sf.info(str(dm.audio_dir / df["file_name"][0]))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 8000)
        item = dm.datasets["test"][0]
        assert item["audio"].shape == (8000,) and item["length"] == 8000


def test_every_split_has_every_class(tmp_path):
    write_task(tmp_path, "synth_octave_sine", 1, clips_per_class=12, duration=0.1)
    df = pd.read_csv(tmp_path / "evar/metadata/synth_octave_sine.csv")
    counts = df.groupby(["split", "label"]).size().unstack()
    assert counts.loc["train"].tolist() == [8] * 5  # 60 / 20 / 20 per class
    assert counts.loc["valid"].tolist() == [2] * 5 and counts.loc["test"].tolist() == [2] * 5


@pytest.mark.parametrize("task", ["synth_octave_sine", "synth_octave_saw", "synth_octave_square"])
def test_f0_lies_in_the_labelled_octave(tmp_path, task):
    """The written f0 is in the octave of the label, and the audio's fundamental is at that f0."""
    write_task(tmp_path, task, 3, clips_per_class=3, duration=0.5)
    df = pd.read_csv(tmp_path / f"evar/metadata/{task}.csv")
    for _, r in df.iterrows():
        octave = int(r["label"].split("_")[1])
        c_lo = 440.0 * 2 ** ((12 * (octave + 1) - 69) / 12)
        assert c_lo <= r["f0_hz"] < 2 * c_lo
        x, sr = sf.read(tmp_path / f"work/16k/{task}" / r["file_name"])
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
        freqs = np.fft.rfftfreq(8 * len(x), 1 / sr)
        band = freqs > 30
        # strongest partial is a harmonic of f0, and f0 itself carries energy well above the noise
        peak = freqs[band][np.argmax(spec[band])]
        assert abs(peak / r["f0_hz"] - round(peak / r["f0_hz"])) < 0.02
        at_f0 = spec[np.argmin(abs(freqs - r["f0_hz"]))]
        assert at_f0 > 20 * np.median(spec[band])
        level = 20 * np.log10(np.abs(x).max())
        assert -21 < level < -2


def test_timbre_families_differ_in_rolloff(tmp_path):
    """Saw-like clips carry much more energy above the fundamental than sine-like ones."""
    ratios = {}
    for task in ("synth_octave_sine", "synth_octave_saw"):
        write_task(tmp_path, task, 0, clips_per_class=3, duration=0.5, octaves=(3, 4))
        df = pd.read_csv(tmp_path / f"evar/metadata/{task}.csv")
        r = []
        for _, row in df.iterrows():
            x, sr = sf.read(tmp_path / f"work/16k/{task}" / row["file_name"])
            spec = np.abs(np.fft.rfft(x)) ** 2
            freqs = np.fft.rfftfreq(len(x), 1 / sr)
            r.append(spec[freqs > 1.5 * row["f0_hz"]].sum() / spec.sum())
        ratios[task] = np.median(r)
    assert ratios["synth_octave_saw"] > 0.2 > 0.05 > ratios["synth_octave_sine"]


def test_no_silent_overwrite(tmp_path):
    write_task(tmp_path, "synth_octave_sine", 0, clips_per_class=3, duration=0.1)
    with pytest.raises(OutputExistsError, match="synth_octave_sine.csv"):
        write_task(tmp_path, "synth_octave_sine", 0, clips_per_class=3, duration=0.1)
    before = tree(tmp_path)
    write_task(tmp_path, "synth_octave_sine", 1, clips_per_class=3, duration=0.1, overwrite=True)
    assert tree(tmp_path) != before


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Unknown synthetic task 'synth_x'"):
        write_task(tmp_path, "synth_x", 0)
    with pytest.raises(ValueError, match="clips_per_class must be >= 3"):
        write_task(tmp_path, "synth_octave_sine", 0, clips_per_class=2)
    with pytest.raises(ValueError, match="duration"):
        write_task(tmp_path, "synth_octave_sine", 0, duration=0)


@pytest.mark.slow
def test_cli(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "analysis",
        "synth",
        "--out",
        str(tmp_path / "cli"),
        "--task",
        "synth_octave_sine",
        "--seed",
        "4",
        "--clips-per-class",
        "3",
        "--duration",
        "0.2",
    ]
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    write_task(tmp_path / "api", "synth_octave_sine", 4, clips_per_class=3, duration=0.2)
    assert tree(tmp_path / "cli") == tree(tmp_path / "api")
