"""ActivationStatsCallback under DDP (2 CPU processes, gloo) through ``python train.py predict``.

``strategy=ddp`` re-launches the command line, so DDP runs only in a subprocess of train.py. The data:
7 clips (odd: ranks hold 4 and 3), batch size 2 (ranks run different batch counts), class 2 only on
clip 6, which only rank 0 sees. The 2-process run must equal the 1-process run: counts bit for bit,
features/gts row for row (each rank spools its rows; rank 0 assembles them in dataset order), the top
clips exactly (the ranks' top K merged). Float results (embeddings, act_sum) match to round-off only: the
ranks run other batch compositions, and CPU matmuls of another batch size differ in the last bits
(measured here: 1.2e-7 on embeddings, 6e-8 on act_sum).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_train_predict

ROOT = Path(__file__).resolve().parents[1]
INT_KEYS = ("count", "n_tokens", "n_tokens_site", "n_clips", "n_positions")


def _predict(tmp: Path, name: str, devices: int, n: int = 7, timeout: float = 120.0) -> subprocess.CompletedProcess:
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
                    "init_args": {"out_dir": str(work / "out"), "tokens": "patches", "level": "clip", "top_k": 3},
                }
            ],
        },
        "model": {"class_path": "_stats_toy.ToyExtractor"},
        "data": {
            "class_path": "_stats_toy.ToyDataModule",
            "init_args": {"n": n, "batch_size": 2, "labels": [0, 1, 0, 1, 0, 1, 2][:n]},
        },
    }
    return run_train_predict(work, cfg, devices, timeout=timeout)


def _ok(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, f"train.py predict failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"


@pytest.mark.ddp
def test_ddp_two_processes_equal_one(tmp_path: Path) -> None:
    one, two = _predict(tmp_path, "one", 1), _predict(tmp_path, "two", 2)
    _ok(one)
    _ok(two)
    a, b = tmp_path / "one/out/toy_task_toy", tmp_path / "two/out/toy_task_toy"
    sa = torch.load(a / "stats.pt", weights_only=False)
    sb = torch.load(b / "stats.pt", weights_only=False)
    assert sa["n_clips"].tolist() == [3, 3, 1]  # class 2: one clip, seen by one rank only
    for key in INT_KEYS:
        assert sa[key].dtype == torch.int64 and torch.equal(sa[key], sb[key]), key
    # float sums of float32 activations computed in other batch compositions (round-off only)
    assert torch.allclose(sa["act_sum"], sb["act_sum"], rtol=1e-6, atol=1e-6)
    assert torch.allclose(sa["rate_sum"], sb["rate_sum"], rtol=1e-12, atol=1e-12)  # from exact counts
    for key in ("sites", "site_neurons", "classes", "tokens", "level", "splits"):
        assert sa[key] == sb[key], key
    fa, fb = torch.load(a / "features.pt"), torch.load(b / "features.pt")
    assert fa.shape == fb.shape and fa.shape[0] == 7
    assert torch.allclose(fa, fb, rtol=1e-5, atol=1e-5)
    # row for row: each row is nearest to its own counterpart (no permutation, duplicate or gap)
    assert torch.cdist(fa, fb).argmin(1).tolist() == list(range(7))
    assert torch.equal(torch.load(a / "gts.pt"), torch.load(b / "gts.pt"))
    ia, ib = pd.read_csv(a / "index.csv"), pd.read_csv(b / "index.csv")
    assert ia["index"].tolist() == list(range(7)) and ia.equals(ib)
    oa, ob = torch.load(a / "over_zero.pt"), torch.load(b / "over_zero.pt")
    assert torch.allclose(oa, ob, equal_nan=True)
    # top clips: the merge of the ranks' top 3 is the top 3 of all clips (indices exact, peaks exact)
    ta, tb = torch.load(a / "top_clips.pt"), torch.load(b / "top_clips.pt")
    for key in ("index", "frame", "band"):
        assert torch.equal(ta[key], tb[key]), key
    assert torch.allclose(ta["score"], tb["score"], rtol=1e-5, atol=1e-6)
    assert (ta["index"][0, :, 0] >= 0).all() and ta["k"] == tb["k"] == 3
    assert not [p for p in (tmp_path / "two/out").iterdir() if p.name.startswith(".")]  # spools removed
    ma, mb = json.loads((a / "manifest.json").read_text()), json.loads((b / "manifest.json").read_text())
    assert ma["world_size"] == 1 and mb["world_size"] == 2
    assert ma["data_list_sha256"] == mb["data_list_sha256"]
    assert mb["config"]["data"]["init_args"]["n"] == 7  # the LightningCLI config


@pytest.mark.ddp
def test_fewer_clips_than_processes_is_a_clear_error(tmp_path: Path) -> None:
    p = _predict(tmp_path, "tiny", 2, n=1)
    assert p.returncode != 0
    assert "has 1 clips but the run uses 2 processes" in p.stderr
    assert not (tmp_path / "tiny/out/toy_task_toy").exists()


@pytest.mark.ddp
def test_experiment_config_runs_from_the_cli(tmp_path: Path, synthetic_root: Path) -> None:
    """``python train.py predict --config configs/experiment/m2d_tiny_synth_octave_sine.yaml`` on the
    synthetic task (tiny random M2D, chunked clips) writes the run folder with every file."""
    out = tmp_path / "stats"
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "predict",
        "--config",
        str(ROOT / "configs/experiment/m2d_tiny_synth_octave_sine.yaml"),
        f"--data.init_args.evar_root={synthetic_root}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.precision=bf16-mixed",
        "--trainer.callbacks=callbacks.ActivationStatsCallback",
        f"--trainer.callbacks.out_dir={out}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    _ok(p)
    folder = out / "synth_octave_sine_m2d_tiny"
    assert sorted(f.name for f in folder.iterdir()) == sorted(
        [
            "over_zero.pt",
            "classes.txt",
            "features.pt",
            "gts.pt",
            "stats.pt",
            "index.csv",
            "manifest.json",
            "top_clips.pt",
        ]
    )
    man = json.loads((folder / "manifest.json").read_text())
    assert man["precision"] == "bf16-mixed" and man["encoder_name"] == "m2d_tiny"
    n = len(pd.read_csv(folder / "index.csv"))
    assert torch.load(folder / "features.pt").shape == (n, 320)
    assert torch.load(folder / "over_zero.pt").shape == (2, 256, len((folder / "classes.txt").read_text().split()))
