"""Hugging Face encoders end to end through ``train.py`` on the synthetic octave task (tiny random models
saved to a temporary folder, loaded offline through configs/model/hf_*.yaml):

* Whisper: ``train.py predict`` with ActivationStatsCallback -> ``python -m analysis identify`` -> probe ->
  ``train.py test`` with AblationCallback;
* HuBERT (batched with an attention mask): ``train.py predict`` with ActivationStatsCallback.

Counted positions are checked against what the clips' lengths alone imply; the pipeline's datamodule
follows the model's sample rate.
"""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest
import torch
import yaml

from _hf_models import save_tiny
from analysis.app.cli import main as analysis_main
from analysis.app.config import load_config
from analysis.app.pipeline import Pipeline
from analysis.app.probe import best_checkpoint, fit_seeds
from conftest import REPO_ROOT

MODEL_CONFIGS = REPO_ROOT / "configs" / "model"
TASK = "synth_octave_sine"


def _train(args, cwd, monkeypatch):
    """``python train.py <args>`` in-process from ``cwd`` (one device: no re-launch)."""
    import train

    with monkeypatch.context() as m:
        m.chdir(cwd)
        m.setattr(sys, "argv", ["train.py"])
        train.main(args)


def _config(family: str, folder, root, callback: dict, model: dict | None = None) -> dict:
    enc = yaml.safe_load((MODEL_CONFIGS / f"hf_{family}.yaml").read_text())
    enc["init_args"]["encoder"]["init_args"]["model_path"] = str(folder)
    return {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_checkpointing": False,
            "callbacks": [callback],
        },
        "model": model or enc,
        "data": {
            "class_path": "datamodules.EVARDataModule",
            "init_args": {
                "evar_root": str(root),
                "task": TASK,
                "sample_rate": 16000,
                "batch_size": 8,
                "num_workers": 0,
            },
        },
    }


def _stats_cb(out) -> dict:
    return {
        "class_path": "callbacks.ActivationStatsCallback",
        "init_args": {"out_dir": str(out), "tokens": "all", "level": "token"},
    }


def _meta(root) -> pd.DataFrame:
    return pd.read_csv(root / "evar" / "metadata" / f"{TASK}.csv")


@pytest.mark.slow
def test_whisper_predict_identify_probe_ablation(synthetic_root, tmp_path, monkeypatch):
    folder = save_tiny("whisper", tmp_path / "whisper_tiny")
    cfg = _config("whisper", folder, synthetic_root, _stats_cb(tmp_path / "stats"))
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(cfg))
    _train(
        ["predict", "--config", str(tmp_path / "predict.yaml"), "--return_predictions", "false"], tmp_path, monkeypatch
    )
    run = tmp_path / "stats" / f"{TASK}_whisper_base"
    stats = torch.load(run / "stats.pt", weights_only=False)
    assert stats["sites"] == [f"model.layers.{i}.activation_fn" for i in range(3)] and stats["site_neurons"] == [72] * 3
    # 0.5 s clips: 50 mel frames of 10 ms -> 25 encoder tokens each (the 1 s chunk's other 25 are padding)
    meta = _meta(synthetic_root)
    classes = (run / "classes.txt").read_text().split()
    n = torch.tensor([int((meta["label"].astype(str) == c).sum()) for c in classes])
    per_clip = math.ceil(math.ceil(0.5 * 16000 / 160) / 2)
    assert torch.equal(stats["n_tokens_site"], (per_clip * n)[None].expand(3, -1))
    assert analysis_main(["identify", "--run", str(run), "--top-rate", "0.05"]) in (0, None)
    fit_seeds(run, tmp_path / "probe", seeds=(42,), lr=1e-2, max_epochs=5, patience=3)
    abl = {
        "class_path": "callbacks.ablation.AblationCallback",
        "init_args": {
            "out_dir": str(tmp_path / "ablation"),
            "run_dir": str(run),
            "random_draws": 2,
            "k_grid": [1],
            "random_for_topk": False,
            "neuron_lists": [{"name": "some", "neurons": [[0, 3], [1, 5], [2, 70]], "targets": [classes[0]]}],
        },
    }
    enc = _config("whisper", folder, synthetic_root, abl)["model"]["init_args"]["encoder"]
    model = {
        "class_path": "lightning_modules.AudioClassifier",
        "init_args": {"encoder": enc, "probe_checkpoint": str(best_checkpoint(tmp_path / "probe"))},
    }
    cfg = _config("whisper", folder, synthetic_root, abl, model=model)
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(cfg))
    _train(["test", "--config", str(tmp_path / "test.yaml")], tmp_path, monkeypatch)
    t = pd.read_csv(tmp_path / "ablation" / "ablation.csv", keep_default_na=False, na_values=[""])
    base = t[(t.condition == "baseline") & (t["class"] == "ALL")]
    assert int(base["n"].iloc[0]) == int((meta["split"] == "test").sum())
    assert {"baseline", "explicit", "random"} <= set(t["kind"])
    some = t[(t.condition == "some") & (t["class"] == "ALL")]
    assert int(some["n"].iloc[0]) == int(base["n"].iloc[0])


@pytest.mark.slow
def test_hubert_predict_counts_only_real_frames(synthetic_root, tmp_path, monkeypatch):
    folder = save_tiny("hubert", tmp_path / "hubert_tiny")
    cfg = _config("hubert", folder, synthetic_root, _stats_cb(tmp_path / "stats"))
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(cfg))
    _train(
        ["predict", "--config", str(tmp_path / "predict.yaml"), "--return_predictions", "false"], tmp_path, monkeypatch
    )
    stats = torch.load(tmp_path / "stats" / f"{TASK}_hubert_base" / "stats.pt", weights_only=False)
    hf_cfg = json.loads((folder / "config.json").read_text())
    frames = 0.5 * 16000
    for k, s in zip(hf_cfg["conv_kernel"], hf_cfg["conv_stride"]):
        frames = (frames - k) // s + 1
    meta = _meta(synthetic_root)
    assert int(stats["n_tokens_site"][0].sum()) == int(frames) * len(meta)
    assert len(stats["sites"]) == hf_cfg["num_hidden_layers"]


def test_pipeline_datamodule_follows_the_model_sample_rate(synthetic_root, tmp_path):
    cfg = {
        "out": str(tmp_path / "out"),
        "data": {"evar_root": str(synthetic_root)},
        "tasks": {TASK: {}},
        "models": {
            "m32k": {
                "class_path": "lightning_modules.encoders.M2DEncoder",
                "init_args": {
                    "width": 16,
                    "depth": 1,
                    "num_heads": 2,
                    "input_frames": 32,
                    "sample_rate": 32000,
                    "seed": 0,
                },
            }
        },
    }
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(cfg))
    pipe = Pipeline(load_config(str(tmp_path / "pipe.yaml")))
    dm = pipe.datamodule(TASK, pipe.encoder("m32k"))
    assert dm.sample_rate == 32000 and dm.hparams["sample_rate"] == 32000
    dm.setup("predict")
    assert dm.audio_dir == synthetic_root / "work" / "32k" / TASK
    with pytest.raises(FileNotFoundError, match="work/32k"):  # the synthetic task exists only at 16 kHz
        dm.check_files(["test"])
