"""ActivationStatsCallback inside ``trainer.predict`` (one device): run-folder contents against brute
force on the toy protocol encoder, hook removal (also on exception), overwrite refusal, bf16."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import lightning as L
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from analysis.runs.atomic import OutputExistsError
from callbacks import ActivationStatsCallback
from test_activation_stats import ToyEncoder, brute_force, toy_data

CLASSES = ["low", "mid", "high"]


class _Clips(Dataset):
    def __init__(self, audio, lengths, labels, splits) -> None:
        self.audio, self.lengths, self.labels, self.splits = audio, lengths, labels, splits

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"audio": self.audio[i], "length": self.lengths[i], "label": self.labels[i], "index": i,
                "split": self.splits[i], "file_name": f"clip_{i:03d}.wav"}


class ToyDataModule(L.LightningDataModule):
    """Batch dicts in the EVARDataModule format (COMMON brief) over in-memory toy clips."""

    task = "toy_task"

    def __init__(self, n: int = 7, multilabel: bool = False, batch_size: int = 3,
                 labels: Optional[list[int]] = None) -> None:
        """n clips; labels: class per clip (default ``i % 3``) for single-label data."""
        super().__init__()
        self.audio, self.lengths, self.labels = toy_data(n=n, multilabel=multilabel)
        if labels is not None:
            self.labels = torch.tensor(labels, dtype=torch.long)
        self.splits = [("train", "valid", "test")[i % 3] for i in range(n)]
        self.classes, self.multilabel, self.batch_size = CLASSES, multilabel, batch_size

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(_Clips(self.audio, self.lengths, self.labels, self.splits), batch_size=self.batch_size)


class ToyExtractor(L.LightningModule):
    def __init__(self, fail_at_batch: int = -1) -> None:
        super().__init__()
        self.encoder = ToyEncoder().eval()
        self.fail_at_batch = fail_at_batch

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if batch_idx == self.fail_at_batch:
            raise RuntimeError("boom inside a batch")
        emb = self.encoder(batch["audio"], batch["length"])
        return {"embedding": emb, "label": batch["label"], "index": batch["index"], "split": batch["split"]}


def _trainer(cb: ActivationStatsCallback, **kw: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[cb], enable_progress_bar=False,
                     enable_model_summary=False, **kw)


def _hooks(enc: ToyEncoder) -> int:
    return sum(len(enc.get_submodule(s)._forward_hooks) for s in enc.neuron_sites)


@pytest.mark.parametrize("tokens,level,multilabel", [("all", "token", False), ("patches", "clip", False),
                                                     ("patches", "token", True), ("all", "clip", True)])
def test_run_folder_matches_brute_force(tmp_path: Path, tokens: str, level: str, multilabel: bool) -> None:
    dm = ToyDataModule(multilabel=multilabel)
    model = ToyExtractor()
    cb = ActivationStatsCallback(out_dir=str(tmp_path), tokens=tokens, level=level)
    _trainer(cb).predict(model, datamodule=dm, return_predictions=False)
    folder = tmp_path / "toy_task_toy"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["over_zero.pt", "classes.txt", "features.pt", "gts.pt", "stats.pt", "index.csv", "manifest.json",
         "top_clips.pt"])
    assert _hooks(model.encoder) == 0

    enc = model.encoder
    enc.record = []
    with torch.inference_mode():
        emb = enc(dm.audio, dm.lengths)
    ref = brute_force(enc.record, dm.labels, 3, tokens, enc.site_neurons)
    stats = torch.load(folder / "stats.pt", weights_only=False)
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(stats[key], ref[key]), key
    assert torch.allclose(stats["act_sum"], ref["act_sum"], rtol=1e-5, atol=1e-5)
    assert ("rate_sum" in stats) == (level == "clip")
    assert stats["sites"] == enc.neuron_sites and stats["site_neurons"] == [6, 4]
    assert stats["classes"] == CLASSES and stats["tokens"] == tokens and stats["level"] == level
    oz = torch.load(folder / "over_zero.pt")
    expect = (ref["count"].double() / ref["n_tokens_site"].double()[:, None, :] if level == "token"
              else ref["rate_sum"] / ref["n_clips"].double())
    assert oz.dtype == torch.float32 and oz.shape == (2, 6, 3)
    assert torch.isnan(oz[1, 4:]).all()
    assert torch.allclose(oz[0], expect[0].float()) and torch.allclose(oz[1, :4], expect[1, :4].float())

    feats = torch.load(folder / "features.pt")
    assert torch.allclose(feats, emb, atol=1e-6)  # rows in dataset order
    gts = torch.load(folder / "gts.pt")
    assert torch.equal(gts, dm.labels.long() if not multilabel else dm.labels.float())
    assert (folder / "classes.txt").read_text().splitlines() == CLASSES
    idx = pd.read_csv(folder / "index.csv", keep_default_na=False)
    assert list(idx.columns) == ["row", "index", "file_name", "label", "split"]
    assert idx["row"].tolist() == list(range(7)) and idx["index"].tolist() == list(range(7))
    assert idx["file_name"][3] == "clip_003.wav" and idx["split"].tolist() == dm.splits
    if not multilabel:
        assert idx["label"].tolist() == [CLASSES[int(c)] for c in dm.labels]
    else:
        assert idx["label"][0] == "low,mid,high" and idx["label"][1] == "low"
    man = json.loads((folder / "manifest.json").read_text())
    assert man["world_size"] == 1 and man["tokens"] == tokens and man["level"] == level
    assert len(man["data_list_sha256"]) == 64 and man["n_clips"] == 7
    assert {"torch", "lightning", "python"} <= set(man["versions"]) and "config" in man and "time" in man


def test_splits_option_counts_only_those_splits(tmp_path: Path) -> None:
    dm, model = ToyDataModule(n=9), ToyExtractor()
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), splits=["train", "test"])).predict(
        model, datamodule=dm, return_predictions=False)
    enc = model.encoder
    enc.record = []
    with torch.inference_mode():
        enc(dm.audio, dm.lengths)
    counted = torch.tensor([s in ("train", "test") for s in dm.splits])
    ref = brute_force(enc.record, dm.labels, 3, "all", enc.site_neurons, counted_clips=counted)
    stats = torch.load(tmp_path / "toy_task_toy" / "stats.pt", weights_only=False)
    assert torch.equal(stats["count"], ref["count"]) and torch.equal(stats["n_clips"], ref["n_clips"])
    assert stats["splits"] == ["train", "test"]
    assert torch.load(tmp_path / "toy_task_toy" / "features.pt").shape[0] == 9  # features of every clip


def test_hooks_removed_after_exception(tmp_path: Path) -> None:
    model = ToyExtractor(fail_at_batch=1)
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(ActivationStatsCallback(out_dir=str(tmp_path))).predict(model, datamodule=ToyDataModule())
    assert _hooks(model.encoder) == 0
    assert not (tmp_path / "toy_task_toy").exists()


def test_overwrite_refused_then_allowed(tmp_path: Path) -> None:
    dm = ToyDataModule()
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path))).predict(ToyExtractor(), datamodule=dm)
    before = (tmp_path / "toy_task_toy" / "stats.pt").read_bytes()
    model = ToyExtractor()
    with pytest.raises(OutputExistsError, match="toy_task_toy"):
        _trainer(ActivationStatsCallback(out_dir=str(tmp_path))).predict(model, datamodule=dm)
    assert _hooks(model.encoder) == 0
    assert (tmp_path / "toy_task_toy" / "stats.pt").read_bytes() == before
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), overwrite=True, suffix="toy")).predict(
        ToyExtractor(), datamodule=dm)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_task_toy"]  # no temporary folder left


def test_bf16_mixed_runs(tmp_path: Path) -> None:
    dm = ToyDataModule()
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path)), precision="bf16-mixed").predict(
        ToyExtractor(), datamodule=dm)
    stats = torch.load(tmp_path / "toy_task_toy" / "stats.pt", weights_only=False)
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), suffix="fp32")).predict(ToyExtractor(), datamodule=dm)
    ref = torch.load(tmp_path / "toy_task_fp32" / "stats.pt", weights_only=False)
    # Same positions; counts may differ slightly where bf16 flips the sign of near-zero activations.
    assert torch.equal(stats["n_tokens"], ref["n_tokens"]) and torch.equal(stats["n_clips"], ref["n_clips"])
    diff = (stats["count"] - ref["count"]).abs().sum() / ref["count"].sum()
    assert diff < 0.05
    man = json.loads((tmp_path / "toy_task_toy" / "manifest.json").read_text())
    assert man["precision"] == "bf16-mixed"


def test_tensorboard_layer_rates(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(str(tmp_path / "tb"), name="x")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=tb, enable_progress_bar=False,
                        callbacks=[ActivationStatsCallback(out_dir=str(tmp_path / "out"))])
    trainer.predict(ToyExtractor(), datamodule=ToyDataModule())
    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    events = acc.Scalars("activation_stats/toy_task/mean_firing_rate")
    oz = torch.load(tmp_path / "out" / "toy_task_toy" / "over_zero.pt")
    assert [e.step for e in events] == [0, 1]
    assert abs(events[1].value - float(oz[1].nanmean())) < 1e-6
