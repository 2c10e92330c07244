"""The tuning and steering stages of the pipeline on the tiny synthetic task with the real CREPE tiny: the
contract files (``models/<model>/tuning/<dimension>.csv``, ``models/<model>/steering.csv``), the verb
giving the same table as the stage, the summary's claims read from the CSVs, skip on re-run, and config
errors naming the key."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.app.cli import main as cli_main
from analysis.app.config import PipelineError, load_config
from analysis.runs.read import read_stats
from _pipeline_config import pipeline_config, write_config

TUNING = {
    "dimensions": ["pitch", "loudness"],
    "values": {"pitch": [36, 48, 60, 72, 84], "loudness": [-40, -20]},
    "clips_per_value": 1,
    "duration": 0.5,
}
STEERING = {"enabled": True, "gains": [0, 1, 2], "random_draws": 2}


@pytest.fixture(scope="module")
def tuned(synthetic_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline_tuning")
    out = tmp / "out"
    cfg = pipeline_config(synthetic_root, out, tuning=TUNING, steering=STEERING)
    cfg["stability"] = {"enabled": False}
    path = write_config(cfg, tmp / "pipe.yaml")
    assert cli_main(["pipeline", "--config", str(path)]) == 0
    return path, out


@pytest.mark.slow
def test_tuning_and_steering_contract_files(tuned, tmp_path, capsys):
    path, out = tuned
    model = out / "models" / "crepe_tiny"
    n_units = sum(read_stats(out / "runs" / "synth_octave_sine_crepe_tiny")["site_neurons"])
    for dim in ("pitch", "loudness"):
        t = pd.read_csv(model / "tuning" / f"{dim}.csv")
        assert list(t.columns[:5]) == ["unit", "site", "preferred_value", "bandwidth", "selectivity"]
        assert len(t) == n_units  # one row per unit
        assert (model / "tuning" / f"{dim}.pt").is_file()
        assert (model / "tuning" / f"{dim}-synth_octave_sine.pdf").is_file()
    pitch = pd.read_csv(model / "tuning" / "pitch.csv")
    assert set(pitch["preferred_value"].dropna()) <= {36.0, 42.0, 48.0, 54.0, 60.0, 66.0, 72.0, 78.0, 84.0}
    s = pd.read_csv(model / "steering.csv")
    assert list(s.columns[:8]) == [
        "task",
        "class",
        "gain",
        "baseline",
        "on_target",
        "random_lo",
        "random_hi",
        "p_value",
    ]
    one = s[s.gain == 1.0]
    assert len(one) and (one.on_target == one.baseline).all()  # g = 1 is the unablated model
    other = s[(s.gain != 1.0) & (s.set_size > 0)]
    assert len(other) and other[["random_lo", "random_hi", "p_value"]].notna().all().all()
    # the summary states each octave set's share from tuning_ranges.csv, with its interval and the random units
    ranges = pd.read_csv(out / "report" / "tuning_ranges.csv")
    md = (out / "report" / "summary.md").read_text(encoding="utf-8")
    assert len(ranges) and (ranges.dimension == "pitch").all()
    for r in ranges.to_dict("records"):
        if r["n_units"]:
            assert f"{r['in_range']} of {r['n_units']} {r['class']} units ({r['fraction']:.0%}" in md
            assert f"[{r['range_lo']:g}, {r['range_hi']:g})" in md
    assert "95% Wilson" in md and "random sets of the same size" in md and "×2" in md
    assert "tuning page" in (out / "report" / "index.html").read_text(encoding="utf-8")
    page = (model / "tuning" / "index.html").read_text(encoding="utf-8")
    assert "class='sortable'" in page and "pitch-synth_octave_sine.png" in page
    # the verb gives the stage's table from the same run folder
    assert (
        cli_main(
            [
                "tuning",
                "--run",
                str(out / "runs" / "tuning_pitch_crepe_tiny"),
                "--dimension",
                "pitch",
                "--out",
                str(tmp_path / "verb"),
            ]
        )
        == 0
    )
    assert pd.read_csv(tmp_path / "verb" / "pitch.csv").equals(pitch)
    # a re-run skips every stage
    capsys.readouterr()
    assert cli_main(["pipeline", "--config", str(path)]) == 0
    assert "0 stages ran" in capsys.readouterr().out


@pytest.mark.parametrize(
    "section,value,msg",
    [
        ("tuning", {"dimensions": ["colour"]}, "tuning.*unknown"),
        ("tuning", {"dimensions": ["pitch"], "values": {"loudness": [1, 2]}}, "tuning.*values"),
        ("steering", {"enabled": True, "gains": [1]}, "steering.*gains"),
    ],
)
def test_bad_tuning_config_names_the_key(synthetic_root, tmp_path, section, value, msg):
    path = write_config(pipeline_config(synthetic_root, tmp_path / "out", **{section: value}), tmp_path / "bad.yaml")
    with pytest.raises(PipelineError, match=msg):
        load_config(path)
