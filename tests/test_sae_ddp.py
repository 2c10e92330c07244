"""SAE latents counted under DDP (2 CPU processes, gloo, through ``python train.py predict``) equal one
process bit for bit: a feature site goes through the same counting callback as a neuron site."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from _sae_toy import sae_file

from analysis.runs.read import read_stats
from conftest import run_train_predict

ROOT = Path(__file__).resolve().parents[1]


def _predict(tmp: Path, name: str, devices: int, sae: Path) -> subprocess.CompletedProcess:
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
                    "init_args": {"out_dir": str(work / "out"), "top_k": 2},
                }
            ],
        },
        "model": {"class_path": "_sae_toy.FeatureToyExtractor", "init_args": {"sae": str(sae)}},
        "data": {
            "class_path": "_stats_toy.ToyDataModule",
            "init_args": {"n": 7, "batch_size": 2, "labels": [0, 1, 0, 1, 0, 1, 2]},
        },
    }
    return run_train_predict(work, cfg, devices, timeout=180)


@pytest.mark.slow
@pytest.mark.ddp
def test_latent_counts_two_processes_equal_one(tmp_path: Path) -> None:
    sae = sae_file(tmp_path, "blocks.0.act", 6, 10, 3, "toy")
    runs = [_predict(tmp_path, n, d, sae) for n, d in (("one", 1), ("two", 2))]
    for p in runs:
        assert p.returncode == 0, f"train.py predict failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    a, b = (read_stats(tmp_path / n / "out" / "toy_task_toy_sae") for n in ("one", "two"))
    assert a["sites"] == b["sites"] == ["encoder.blocks.0.act.latents"]
    assert int(a["count"].sum()) > 0
    for key in ("count", "n_tokens", "n_clips"):
        assert a[key].dtype == torch.int64 and torch.equal(a[key], b[key]), key
