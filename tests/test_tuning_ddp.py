"""Tuning curves from a counting pass under DDP (2 CPU processes, gloo, through ``python train.py predict``)
equal the 1-process curves: P(active | value) and the tuning table exactly (they come from integer counts),
the mean activation per value to round-off (float sums in other batch compositions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.app.tuning import curves_equal, tuning_from_run
from analysis.runs.read import read_tuning_curves
from datamodules.stimuli import write_stimuli
from conftest import run_train_predict

ROOT = Path(__file__).resolve().parents[1]


def _predict(tmp: Path, evar: Path, name: str, devices: int) -> Path:
    work = tmp / name
    work.mkdir()
    cfg = {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {
                    "class_path": "callbacks.ActivationStatsCallback",
                    "init_args": {"out_dir": str(work / "out"), "top_k": 0, "features": False, "class_sums": True},
                }
            ],
        },
        "model": {
            "class_path": "lightning_modules.FeatureExtractor",
            "init_args": {"encoder": {"class_path": "_tuning_models.PitchUnits"}},
        },
        "data": {
            "class_path": "datamodules.EVARDataModule",
            "init_args": {"evar_root": str(evar), "task": "tuning_pitch", "batch_size": 3},
        },
    }
    p = run_train_predict(work, cfg, devices, timeout=300)
    assert p.returncode == 0, f"train.py predict failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return work / "out" / "tuning_pitch_pitch_units"


@pytest.mark.slow
@pytest.mark.ddp
def test_tuning_two_processes_equal_one(tmp_path: Path) -> None:
    evar = tmp_path / "evar"
    # 7 values × 1 clip: odd, so the ranks hold 4 and 3 clips and run different batch compositions
    write_stimuli(
        evar, "pitch", seed=5, values=[50, 54, 58, 60, 62, 66, 70], clips_per_value=1, duration=0.5, source="sine"
    )
    tables = {}
    for name, devices in (("one", 1), ("two", 2)):
        tables[name] = tuning_from_run(_predict(tmp_path, evar, name, devices), "pitch", tmp_path / name / "tuning")
    a, b = (read_tuning_curves(tmp_path / n / "tuning", "pitch") for n in ("one", "two"))
    assert curves_equal(a, b)
    assert torch.allclose(a["mean"], b["mean"], rtol=1e-6, atol=1e-9, equal_nan=True)
    assert tables["one"].equals(tables["two"])
    assert a["p_active"][0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1]  # the planted unit (> MIDI 61) on both
