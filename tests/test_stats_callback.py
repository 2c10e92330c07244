"""ActivationStatsCallback inside ``trainer.predict`` (one device): run-folder contents (counts, top clips)
against brute force on the toy protocol encoder, hook removal (also on exception), overwrite refusal,
bf16, counts-only and embedding-free runs, row spooling, and no host read per batch."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from callbacks import pending_rows
from analysis.runs.atomic import OutputExistsError
from analysis.runs.conditions import read_dataset_means
from analysis.runs.read import read_top_clips
from callbacks import ActivationStatsCallback
from lightning_modules.encoders.base import AudioEncoder
from _counting import ToyEncoder, brute_force
from _top_clips import brute_top
from _stats_toy import CLASSES, ToyDataModule, ToyExtractor


def _trainer(cb: ActivationStatsCallback, **kw: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def _hooks(enc: ToyEncoder) -> int:
    return sum(len(enc.get_submodule(s)._forward_hooks) for s in enc.neuron_sites)


@pytest.mark.parametrize(
    "tokens,level,multilabel",
    [("all", "token", False), ("patches", "clip", False), ("patches", "token", True), ("all", "clip", True)],
)
def test_run_folder_matches_brute_force(tmp_path: Path, tokens: str, level: str, multilabel: bool) -> None:
    dm = ToyDataModule(multilabel=multilabel)
    model = ToyExtractor()
    cb = ActivationStatsCallback(out_dir=str(tmp_path), tokens=tokens, level=level)
    _trainer(cb).predict(model, datamodule=dm, return_predictions=False)
    folder = tmp_path / "toy_task_toy"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
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
    expect = (
        ref["count"].double() / ref["n_tokens_site"].double()[:, None, :]
        if level == "token"
        else ref["rate_sum"] / ref["n_clips"].double()
    )
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
        model, datamodule=dm, return_predictions=False
    )
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
        ToyExtractor(), datamodule=dm
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_task_toy"]  # no temporary folder left


def test_bf16_mixed_runs(tmp_path: Path) -> None:
    dm = ToyDataModule()
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), top_k=2), precision="bf16-mixed").predict(
        ToyExtractor(), datamodule=dm
    )
    stats = torch.load(tmp_path / "toy_task_toy" / "stats.pt", weights_only=False)
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), suffix="fp32")).predict(ToyExtractor(), datamodule=dm)
    ref = torch.load(tmp_path / "toy_task_fp32" / "stats.pt", weights_only=False)
    # Same positions; counts may differ slightly where bf16 flips the sign of near-zero activations.
    assert torch.equal(stats["n_tokens"], ref["n_tokens"]) and torch.equal(stats["n_clips"], ref["n_clips"])
    diff = (stats["count"] - ref["count"]).abs().sum() / ref["count"].sum()
    assert diff < 0.05
    assert stats["act_sum"].dtype == torch.float64 and torch.allclose(
        stats["act_sum"], ref["act_sum"], rtol=0.05, atol=0.05
    )
    man = json.loads((tmp_path / "toy_task_toy" / "manifest.json").read_text())
    assert man["precision"] == "bf16-mixed"
    # ...and they are exact for the bf16 activations themselves (a reference of the same precision)
    enc = ToyExtractor().encoder
    enc.record = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        enc(dm.audio[:3], dm.lengths[:3])
        enc(dm.audio[3:6], dm.lengths[3:6])
        enc(dm.audio[6:], dm.lengths[6:])
    assert enc.record[0][1].dtype == torch.bfloat16
    record = []
    for j, (l, act, pos) in enumerate(enc.record):  # batches of 3 clips: clip index within the batch
        record.append((l, act, type(pos)(clip=pos.clip + 3 * (j // 2), valid=pos.valid, special=pos.special)))
    exact = brute_force(record, dm.labels, 3, "all", enc.site_neurons)
    for key in ("count", "n_tokens_site", "n_clips"):
        assert torch.equal(stats[key], exact[key]), key
    top = torch.load(tmp_path / "toy_task_toy" / "top_clips.pt")
    assert top["score"].dtype == torch.float32 and (top["index"][0, :, 0] >= 0).all()


def test_tensorboard_layer_rates(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(str(tmp_path / "tb"), name="x")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=tb,
        enable_progress_bar=False,
        callbacks=[ActivationStatsCallback(out_dir=str(tmp_path / "out"))],
    )
    trainer.predict(ToyExtractor(), datamodule=ToyDataModule())
    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    events = acc.Scalars("activation_stats/toy_task/mean_firing_rate")
    oz = torch.load(tmp_path / "out" / "toy_task_toy" / "over_zero.pt")
    assert [e.step for e in events] == [0, 1]
    assert abs(events[1].value - float(oz[1].nanmean())) < 1e-6


# -- top clips, options, streaming, host syncs ------------------------------------------------------------
def test_top_clips_file_matches_brute_force(tmp_path: Path) -> None:
    dm, model = ToyDataModule(n=9), ToyExtractor()
    cb = ActivationStatsCallback(out_dir=str(tmp_path), tokens="patches", splits=["train", "valid"], top_k=2)
    _trainer(cb).predict(model, datamodule=dm, return_predictions=False)
    top = read_top_clips(tmp_path / "toy_task_toy")
    enc = model.encoder
    enc.record = []
    with torch.inference_mode():
        enc(dm.audio, dm.lengths)
    counted = torch.tensor([s in ("train", "valid") for s in dm.splits])
    ref = brute_top(enc.record, 9, "patches", enc.site_neurons, 2, torch.arange(9), counted)
    assert torch.equal(top["index"], ref["index"]) and torch.equal(top["frame"], ref["frame"])
    assert torch.allclose(top["score"], ref["score"], rtol=1e-5, atol=1e-6)
    assert top["score"].dtype == torch.float32 and top["index"].dtype == torch.int64
    assert top["k"] == 2 and top["sites"] == enc.neuron_sites and top["site_neurons"] == [6, 4]
    assert top["n_bands"] == 0 and (top["band"] == -1).all() and top["frames_per_position"] == 1
    assert set(top["index"].flatten().tolist()) <= {-1} | {i for i in range(9) if counted[i]}  # -1: ragged site
    man = json.loads((tmp_path / "toy_task_toy" / "manifest.json").read_text())
    assert man["top_k"] == 2 and man["act_sum"] is True and man["features"] is True


def test_counts_only_and_no_embeddings(tmp_path: Path) -> None:
    """``top_k: 0, act_sum: false, features: false``: the same counts, no activation sums, no top clips,
    no features.pt; gts.pt and index.csv still describe every clip."""
    dm = ToyDataModule()
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), suffix="full")).predict(ToyExtractor(), datamodule=dm)
    _trainer(
        ActivationStatsCallback(out_dir=str(tmp_path), suffix="lean", top_k=0, act_sum=False, features=False)
    ).predict(ToyExtractor(), datamodule=dm)
    full, lean = tmp_path / "toy_task_full", tmp_path / "toy_task_lean"
    assert sorted(p.name for p in lean.iterdir()) == [
        "classes.txt",
        "gts.pt",
        "index.csv",
        "manifest.json",
        "over_zero.pt",
        "stats.pt",
    ]
    a, b = torch.load(full / "stats.pt", weights_only=False), torch.load(lean / "stats.pt", weights_only=False)
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(a[key], b[key]), key
    assert "act_sum" in a and "act_sum" not in b
    assert torch.equal(torch.load(full / "gts.pt"), torch.load(lean / "gts.pt"))
    assert (full / "index.csv").read_text() == (lean / "index.csv").read_text()
    man = json.loads((lean / "manifest.json").read_text())
    assert man["features"] is False and man["act_sum"] is False and man["top_k"] == 0
    with pytest.raises(ValueError, match="act_sum"):
        read_dataset_means(lean)
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path), suffix="sums", top_k=0, act_sum=True)).predict(
        ToyExtractor(), datamodule=dm
    )
    c = torch.load(tmp_path / "toy_task_sums" / "stats.pt", weights_only=False)
    assert torch.allclose(c["act_sum"], a["act_sum"])


def test_row_spool_is_removed_after_the_run_and_after_a_failure(tmp_path: Path) -> None:
    _trainer(ActivationStatsCallback(out_dir=str(tmp_path))).predict(ToyExtractor(), datamodule=ToyDataModule())
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(ActivationStatsCallback(out_dir=str(tmp_path), suffix="x")).predict(
            ToyExtractor(fail_at_batch=2), datamodule=ToyDataModule()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_task_toy"]


def test_rows_reach_the_spool_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embeddings leave the device every FLUSH_ROWS clips (one copy per chunk, not per batch)."""
    monkeypatch.setattr(pending_rows, "FLUSH_ROWS", 4)
    seen = []

    class Spy(L.Callback):
        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            seen.append(cb._spool.n_rows)

    cb = ActivationStatsCallback(out_dir=str(tmp_path))
    L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[cb, Spy()],
        enable_progress_bar=False,
        enable_model_summary=False,
    ).predict(ToyExtractor(), datamodule=ToyDataModule(n=9, batch_size=2))
    assert seen == [0, 4, 4, 8, 8]  # batches of 2: flushed when 4 rows are pending
    assert torch.load(tmp_path / "toy_task_toy" / "features.pt").shape[0] == 9


class _HostReads(TorchDispatchMode):
    """Counts the operators that read a device tensor back to the host (or need its data for a shape)."""

    OPS = {
        "aten::item",
        "aten::_local_scalar_dense",
        "aten::nonzero",
        "aten::masked_select",
        "aten::unique",
        "aten::_unique2",
        "aten::equal",
        "aten::is_nonzero",
        "aten::repeat_interleave",
    }

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.OPS:
            self.ops.append(func._schema.name)
        return func(*args, **(kwargs or {}))


class _Watch(L.Callback):
    """Enters the dispatch mode when a batch starts (first callback) and leaves it when it ends (last)."""

    def __init__(self, mode: _HostReads, enter: bool) -> None:
        self.mode, self.enter = mode, enter

    def on_predict_batch_start(self, *args, **kw) -> None:
        if self.enter:
            self.mode.__enter__()

    def on_predict_batch_end(self, *args, **kw) -> None:
        if not self.enter:
            self.mode.__exit__(None, None, None)


@pytest.mark.parametrize("options", [dict(top_k=0), dict(top_k=3, level="clip", splits=["train"], act_sum=True)])
def test_no_host_read_per_batch(tmp_path: Path, options: dict) -> None:
    """Between a batch's start and end (forward with the hooks, counting, folding, top clips, queued rows)
    the callback adds no operator that reads a tensor back to the host: on a GPU nothing waits."""
    reads = {}
    for name, cbs in (("bare", []), ("stats", [ActivationStatsCallback(out_dir=str(tmp_path), **options)])):
        mode = _HostReads()
        L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[_Watch(mode, True), *cbs, _Watch(mode, False)],
        ).predict(ToyExtractor(), datamodule=ToyDataModule(n=7, batch_size=2), return_predictions=False)
        reads[name] = mode.ops
    assert reads["stats"] == reads["bare"], reads


def test_per_batch_work_stays_on_the_modules_device() -> None:
    """The callback's per-batch path on the meta device (an encoder and batch on 'meta'): the totals and the
    top clips live there, and any host read would raise (meta tensors hold no data)."""

    class MetaToy(AudioEncoder):
        sample_rate, embed_dim, neuron_sites, channel_axis, site_neurons, name = 16000, 4, ["act"], -1, [6], "meta"

        def __init__(self) -> None:
            super().__init__()
            self.inp, self.act, self.out = nn.Linear(8, 6), nn.GELU(), nn.Linear(6, 4)

        def forward(self, audio, lengths=None):
            b, s = audio.shape
            return self.out(self.act(self.inp(audio[:, : s // 8 * 8].reshape(b, s // 8, 8)))).mean(1)

    enc = MetaToy().to("meta")
    module = SimpleNamespace(encoder=enc)
    cb = ActivationStatsCallback(out_dir="unused", top_k=3, level="clip", splits=["train"])
    cb.begin(enc, CLASSES, "meta")
    meta = dict(device="meta")
    batch = {
        "audio": torch.empty(5, 64, **meta),
        "length": torch.empty(5, dtype=torch.long, **meta),
        "label": torch.empty(5, dtype=torch.long, **meta),
        "index": torch.empty(5, dtype=torch.long, **meta),
        "split": ["train", "train", "test", "valid", "train"],
        "file_name": [f"{i}.wav" for i in range(5)],
    }
    with torch.inference_mode():
        for i in range(3):
            cb.on_predict_batch_start(None, module, batch, i)
            cb.on_predict_batch_end(None, module, {"embedding": enc(batch["audio"])}, batch, i)
    cb._remove_hooks()
    assert {t.device.type for t in list(cb._totals.values()) + list(cb._top.values())} == {"meta"}
    assert cb._pending.n_rows == 15  # rows wait on the device
