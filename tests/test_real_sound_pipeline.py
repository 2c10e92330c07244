"""A GM task rendered from a SoundFont other than the default (a tiny one written by the test) goes through the
whole pipeline with PESTO and CREPE — data, stats, identify, report, compare, probe, ablation, gallery,
summary — from a config alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import yaml

from _sf2 import write_sf2
from analysis.app.cli import main
from analysis.runs.read import read_manifest

TASKS = ("mysf_family", "mysf_octave")
MODELS = ("pesto", "crepe_tiny")


def _config(sf2: Path, out: Path) -> dict:
    return {
        "out": str(out),
        "seed": 0,
        "data": {
            "soundfont": {
                "sf2": str(sf2),
                "clips_per_class": 5,
                "duration": 0.3,
                "splits": [3, 1, 1],
                "families": ["keyboard", "flute"],
                "octaves": [4, 5, 6],
            },
            "batch_size": 8,
            "num_workers": 0,
        },
        "tasks": {t: {"top_rate": 0.1} for t in TASKS},
        "models": {
            "pesto": {"class_path": "lightning_modules.encoders.PestoEncoder", "init_args": {"hop_ms": 150.0}},
            "crepe_tiny": {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "hop_ms": 150.0, "embedding_layer": 6},
            },
        },
        "stats": {"identify_splits": ["train", "valid"]},
        "report": {"cross_task": [list(TASKS)], "within_task": list(TASKS)},
        "stability": {"enabled": False},
        "probe": {"seeds": [42], "max_epochs": 3, "patience": 2, "lr": 1e-2},
        "ablation": {"random_draws": 1, "k_grid": [1], "random_for_topk": False},
        "gallery": {"enabled": True, "per_class": 1, "clips": 2},
    }


@pytest.mark.slow
def test_another_soundfont_through_the_whole_pipeline(tmp_path):
    sf2 = write_sf2(tmp_path / "other.sf2", {0: "saw", 2: "square", 73: "sine", 75: "saw"})
    out = tmp_path / "out"
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(yaml.safe_dump(_config(sf2, out), sort_keys=False), encoding="utf-8")
    assert main(["pipeline", "--config", str(cfg)]) == 0
    evar = out / "evar"
    for task in TASKS:
        meta = pd.read_csv(evar / "evar" / "metadata" / f"{task}.csv")
        assert set(meta["preset"]) <= {"preset 0", "preset 2", "preset 73", "preset 75"}  # the other SoundFont's
        for model in MODELS:
            run = out / "runs" / f"{task}_{model}"
            assert read_manifest(run)["encoder"] in ("PestoEncoder", "CrepeEncoder")
            assert (run / "neurons.csv").is_file() and (run / "top_clips.pt").is_file()
            assert (out / "probes" / f"{task}_{model}" / "probe_results.csv").is_file()
            assert (out / "ablation" / f"{task}_{model}" / "ablation.csv").is_file()
            gallery = out / "gallery" / f"{task}_{model}"
            assert (gallery / "index.html").is_file()
            for wav in gallery.rglob("*.wav"):  # every player plays a rendered note, not silence
                x, _ = sf.read(wav)
                assert abs(x).max() > 1e-3, wav
    table = pd.read_csv(next((out / "compare").glob("task_level_neuron_statistics_*.csv")))
    assert list(table["task"]) == list(TASKS)
    assert all(f"selected_neurons_{m}" in table.columns for m in MODELS)  # the models side by side
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert all(m in html for m in MODELS) and all(t in html for t in TASKS)
    assert (out / ".stages" / "data-mysf_family.json").is_file()
