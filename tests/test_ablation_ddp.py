"""AblationCallback under DDP (2 CPU processes, gloo) through ``python train.py test``, and in bf16.

The test data: the planted toy's 9 clips (odd: Lightning's distributed sampler pads rank 1 with a repeat of
clip 0), batch size 2, class t1600 on clip 6 only, which only rank 0 sees. The 2-process ``ablation.csv``
and ``ablation_groups.csv`` must equal the 1-process ones exactly (integer counts: every clip scored once).
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
import yaml
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader

from callbacks.ablation import AblationCallback
from lightning_modules.audio_classifier import AudioClassifier
from _ablation_toy import CLASSES, AudioSet, ToyEncoder, make_audio, train_probe, write_run_folder

ROOT = Path(__file__).resolve().parents[1]
#: Clips of ``make_audio(2, 2)`` (two per class, class-major) kept for the test split: 9 clips, t1600 once.
KEEP = [0, 1, 2, 3, 4, 5, 6, 8, 9]


class PlantedTestData(LightningDataModule):
    """The planted toy's test clips ``KEEP`` (built from arguments, so ``train.py`` can instantiate it)."""

    task = "planted"

    def __init__(self, batch_size: int = 2) -> None:
        super().__init__()
        audio, labels = make_audio(2, 2)
        self.audio, self.labels = audio[KEEP], labels[KEEP]
        self.classes, self.batch_size = list(CLASSES), batch_size

    def test_dataloader(self) -> DataLoader:
        return DataLoader(AudioSet(self.audio, self.labels, "test"), batch_size=self.batch_size)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("planted_ddp")
    enc = ToyEncoder()
    run = write_run_folder(d / "toy_run", enc, {"train": make_audio(1, 12), "test": make_audio(2, 6)})
    return dict(run=run, ckpt=train_probe(run, d / "probe"))


def _callback_args(planted, out: Path) -> dict:
    return {
        "out_dir": str(out),
        "run_dir": str(planted["run"]),
        "class_sets": True,
        "random_draws": 3,
        "seed": 1,
        "k_grid": [1],
        "figures": False,
        "neuron_lists": [{"name": "two", "neurons": [[0, 1], [0, 3]], "targets": ["t800", "t1600"]}],
    }


def _test(tmp: Path, planted, name: str, devices: int, strategy: str = "expand", **extra) -> Path:
    work = tmp / name
    work.mkdir()
    out = work / "abl"
    cfg = {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {
                    "class_path": "callbacks.ablation.AblationCallback",
                    "init_args": {**_callback_args(planted, out), "strategy": strategy, **extra},
                }
            ],
        },
        "model": {
            "class_path": "lightning_modules.audio_classifier.AudioClassifier",
            "init_args": {
                "encoder": {"class_path": "_ablation_toy.ToyEncoder"},
                "probe_checkpoint": str(planted["ckpt"]),
            },
        },
        "data": {"class_path": "test_ablation_ddp.PlantedTestData"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "test",
        "--config",
        str(work / "config.yaml"),
        f"--trainer.devices={devices}",
    ]
    if devices > 1:
        args.append("--trainer.strategy=ddp")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, f"train.py test failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return out


@pytest.mark.ddp
@pytest.mark.slow
def test_two_processes_give_the_ablation_of_one(tmp_path: Path, planted) -> None:
    one = _test(tmp_path, planted, "one", 1)
    two = _test(tmp_path, planted, "two", 2, strategy="loop")
    a, b = pd.read_csv(one / "ablation.csv"), pd.read_csv(two / "ablation.csv")
    assert a.equals(b), a.compare(b)
    base = a[a.condition == "baseline"].set_index("class")
    assert base.loc["ALL", "n"] == 9 and base.loc["t1600", "n"] == 1  # the repeat of clip 0 is not counted
    assert base.loc["t400", "n"] == 2
    assert (base.loc[CLASSES, "accuracy"] == 1.0).all()
    hit = a[(a.condition == "two") & (a["class"] == "t1600")]
    assert float(hit.accuracy.iloc[0]) < 1.0  # the planted neuron of the rank-0-only class matters
    sa, sb = pd.read_csv(one / "ablation_groups.csv"), pd.read_csv(two / "ablation_groups.csv")
    assert sa.equals(sb)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_processes_give_the_sequential_shared_draws_of_one(tmp_path: Path, planted) -> None:
    """Several rounds of shared draws (12 at most, stop after 2 beats): every round's counts are summed over
    the processes before the next round is chosen, so both runs choose, run and count the same draws."""
    lists = [
        {"name": "two", "neurons": [[0, 1], [0, 3]], "targets": ["t800", "t1600"]},
        {"name": "inert", "neurons": [[0, 6]], "targets": ["t400"]},
    ]
    extra = dict(random_draws=12, draws_stop_after=2, neuron_lists=lists)
    one = _test(tmp_path, planted, "one", 1, **extra)
    two = _test(tmp_path, planted, "two", 2, **extra)
    a, b = pd.read_csv(one / "ablation.csv"), pd.read_csv(two / "ablation.csv")
    assert a.equals(b), a.compare(b)
    assert pd.read_csv(one / "ablation_groups.csv").equals(pd.read_csv(two / "ablation_groups.csv"))
    ca, cb = (json.loads((d / "ablation_conditions.json").read_text())["conditions"] for d in (one, two))
    assert ca == cb
    used = {c["name"]: c["draws_used"] for c in ca if c["kind"] != "random" and c["profile"]}
    assert used["inert"] == 2 and used["two"] == 12  # one set stopped in round 1, one ran every round


def test_bf16_ablation_baseline_equals_plain_test(tmp_path: Path, planted) -> None:
    """bf16-mixed on CPU: the ablation runs, its baseline equals ``trainer.test``'s accuracy at the same
    precision, and zeroing the planted neuron still removes its class."""
    dm = PlantedTestData(batch_size=4)
    cb = AblationCallback(**_callback_args(planted, tmp_path / "abl"))
    model = AudioClassifier(ToyEncoder(), str(planted["ckpt"]))
    tr = Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision="bf16-mixed",
        callbacks=[cb],
    )
    res = tr.test(model, datamodule=dm, verbose=False)[0]
    t = pd.read_csv(tmp_path / "abl" / "ablation.csv")
    base = t[(t.condition == "baseline") & (t["class"] == "ALL")].iloc[0]
    assert base.accuracy == pytest.approx(res["test/acc"], abs=1e-7) and base.n == 9
    r = t[(t.condition == "class:t800") & (t["class"] == "t800")].iloc[0]
    assert r.accuracy < 1.0
    assert cb.correct.device.type == "cpu" and cb.correct.dtype == torch.int64
