"""EVARDataModule: audio read through the datamodule, batches, crops, loaders and samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_metadata, write_wav
from datamodules import EVARDataModule
from datamodules.audio import AudioFileError
from _evar_dm import SR, dm_of, rows_split, sizes


# --------------------------------------------------------------------------- audio through the datamodule
def test_missing_audio_file_names_file_and_row(tmp_path):
    write_metadata(tmp_path, "cremad", rows_split({"train": ["a", "b"], "test": ["a"]}))
    dm = dm_of(tmp_path, "cremad")
    with pytest.raises(FileNotFoundError) as e:
        dm.datasets["test"][0]
    assert "work/16k/cremad/test_0.wav" in str(e.value) and "cremad.csv row 2 (line 4)" in str(e.value)
    with pytest.raises(FileNotFoundError, match="3 audio file"):
        dm.check_files()


def test_sample_rate_mismatch_via_datamodule(tmp_path):
    rows = rows_split({"train": ["a"], "test": ["a"]})
    write_metadata(tmp_path, "cremad", rows)
    write_wav(tmp_path / "work/16k/cremad/test_0.wav", np.zeros(44100, np.float32), 44100)
    dm = dm_of(tmp_path, "cremad")
    with pytest.raises(AudioFileError) as e:
        dm.datasets["test"][0]
    assert "Expected sample rate 16000 in work/16k/cremad/test_0.wav, got 44100" in str(e.value)
    assert "row 1 (line 3)" in str(e.value)
    dm = dm_of(tmp_path, "cremad", resample=True)
    item = dm.datasets["test"][0]
    assert item["length"] == 16000 and item["audio"].shape == (40000,)


def test_sr_dir_from_model_rate(tmp_path):
    rows = rows_split({"train": ["a"], "test": ["a"]})
    write_metadata(tmp_path, "cremad", rows)
    write_wav(tmp_path / "work/32k/cremad/test_0.wav", np.full(320, 0.5, np.float32), 32000)
    dm = dm_of(tmp_path, "cremad", sample_rate=32000)
    assert dm.audio_dir == tmp_path / "work/32k/cremad"
    item = dm.datasets["test"][0]
    assert item["audio"].shape == (80000,) and item["length"] == 320
    # 16 kHz files read for a 32 kHz model when asked explicitly
    write_wav(tmp_path / "work/16k/cremad/test_0.wav", np.full(160, 0.5, np.float32), 16000)
    dm = dm_of(tmp_path, "cremad", sample_rate=32000, file_sample_rate=16000, resample=True)
    assert dm.datasets["test"][0]["length"] == 320
    with pytest.raises(ValueError, match="No EVAR audio folder for sample rate 12345"):
        EVARDataModule(evar_root=str(tmp_path), task="cremad", sample_rate=12345)


# --------------------------------------------------------------------------- batches and crops
@pytest.fixture
def ramp_task(tmp_path):
    """Split task whose clips are ramps of different lengths (value = sample position / 1000 + row)."""
    lengths = {"train": [1000, 300, 1000, 800], "valid": [1000, 200], "test": [1000, 250]}
    labels = {"train": ["a", "b", "a", "b"], "valid": ["a", "b"], "test": ["b", "a"]}
    rows = []
    for split in ("train", "valid", "test"):
        for k, (n, lab) in enumerate(zip(lengths[split], labels[split])):
            name = f"{split}/{k}.wav"
            row = len(rows)
            rows.append({"file_name": name, "label": lab, "split": split})
            stereo = np.stack([np.arange(n) / 1000 + row, np.arange(n) / 1000 + row], axis=1).astype(np.float32)
            write_wav(tmp_path / "work/16k/ramp" / name, stereo)
    write_metadata(tmp_path, "ramp", rows)
    (tmp_path / "evar/metadata/ramp.yaml").write_text("unit_sec: 1.0\n")  # task definition next to the CSV
    return tmp_path


def test_batch_format(ramp_task):
    dm = dm_of(ramp_task, "ramp", unit_sec=500 / SR, batch_size=3)
    b = next(iter(dm.train_dataloader()))
    assert b["audio"].dtype == torch.float32 and b["audio"].shape == (3, 500)
    assert b["length"].dtype == torch.int64 and b["label"].dtype == torch.int64 and b["index"].dtype == torch.int64
    assert b["split"] == ["train"] * 3 and len(b["file_name"]) == 3
    for a, n, i in zip(b["audio"], b["length"], b["index"]):
        assert int(n) == min(500, [1000, 300, 1000, 800][int(i)])
        assert torch.all(a[int(n) :] == 0)
        assert 0 <= float(a[0]) - int(i) < 1.0  # the clip of CSV row i (ramp offset = row)


def test_test_split_head_crop_and_pad(ramp_task):
    dm = dm_of(ramp_task, "ramp", unit_sec=500 / SR)
    t0, t1 = dm.datasets["test"][0], dm.datasets["test"][1]
    assert t0["index"] == 6 and t0["length"] == 500
    assert torch.allclose(t0["audio"], torch.arange(500) / 1000 + 6)  # head crop, mono mean
    assert t1["length"] == 250 and torch.allclose(t1["audio"][:250], torch.arange(250) / 1000 + 7)
    assert torch.all(t1["audio"][250:] == 0)


def test_random_crop_seeded_train_and_valid(ramp_task):
    def starts(dm, split, epoch):
        ds = dm.datasets[split]
        return [round(float(ds[(i, epoch)]["audio"][0]) - int(ds.rows["index"].iloc[i]), 3) for i in range(len(ds))]

    a = dm_of(ramp_task, "ramp", unit_sec=100 / SR, seed=5)
    b = dm_of(ramp_task, "ramp", unit_sec=100 / SR, seed=5)
    c = dm_of(ramp_task, "ramp", unit_sec=100 / SR, seed=6)
    assert starts(a, "train", 0) == starts(b, "train", 0)  # same seed: same crops
    assert starts(a, "train", 0) != starts(c, "train", 0)  # other seed: other crops
    assert starts(a, "train", 0) != starts(a, "train", 1)  # other epoch: other crops
    assert starts(a, "valid", 0) == starts(a, "valid", 3)  # valid: fixed crop per clip
    assert starts(a, "valid", 0)[0] != 0.0 or starts(c, "valid", 0)[0] != 0.0  # valid is random-cropped
    # the crops are contiguous windows of the original clip
    item = a.datasets["train"][(0, 0)]
    x = item["audio"]
    assert torch.allclose(x[1:] - x[:-1], torch.full((99,), 0.001), atol=1e-5)


def test_train_loader_shuffle_reproducible(ramp_task):
    def order(seed, epochs=2):
        dm = dm_of(ramp_task, "ramp", unit_sec=100 / SR, seed=seed, batch_size=2)
        loader = dm.train_dataloader()
        out = []
        for e in range(epochs):
            loader.sampler.set_epoch(e)
            out.append([(int(i), float(a[0])) for b in loader for i, a in zip(b["index"], b["audio"])])
        return out

    o1, o2 = order(1), order(1)
    assert o1 == o2
    assert sorted(i for i, _ in o1[0]) == [0, 1, 2, 3]
    assert o1[0] != o1[1]
    assert any(order(s)[0] != o1[0] for s in (2, 3, 4))


def test_val_and_test_loaders_do_not_shuffle(ramp_task):
    dm = dm_of(ramp_task, "ramp", unit_sec=100 / SR, batch_size=1)
    assert [int(b["index"]) for b in dm.val_dataloader()] == [4, 5]
    assert [int(b["index"]) for b in dm.test_dataloader()] == [6, 7]


def test_predict_order_head_crop(ramp_task):
    dm = dm_of(ramp_task, "ramp", unit_sec=100 / SR, batch_size=3)
    batches = list(dm.predict_dataloader())
    idx = [int(i) for b in batches for i in b["index"]]
    splits = [s for b in batches for s in b["split"]]
    assert idx == list(range(8))
    assert splits == ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    firsts = [float(a[0]) for b in batches for a in b["audio"]]
    assert np.allclose(firsts, list(range(8)))  # head crop everywhere
    again = [float(a[0]) for b in dm.predict_dataloader() for a in b["audio"]]
    assert firsts == again
    dm.predict_splits = ["test", "train"]
    assert [int(i) for b in dm.predict_dataloader() for i in b["index"]] == [6, 7, 0, 1, 2, 3]


def test_limit_per_split(ramp_task):
    dm = dm_of(ramp_task, "ramp", unit_sec=100 / SR, limit=1)
    assert sizes(dm) == (1, 1, 1) and dm.classes == ["a", "b"]


def test_hyperparameters_and_idempotent_setup(ramp_task):
    dm = dm_of(ramp_task, "ramp", unit_sec=100 / SR)
    ds = dm.datasets["train"]
    dm.setup("fit")
    assert dm.datasets["train"] is ds
    assert dm.hparams.task == "ramp" and dm.hparams.unit_sec == pytest.approx(100 / SR)


def test_train_sampler_under_lightning_distributed_wrapper(ramp_task):
    """Under DDP Lightning wraps the train sampler; ranks must get disjoint items, each (index, epoch)."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    dm = dm_of(ramp_task, "ramp", unit_sec=100 / SR, seed=2)
    sampler = dm.train_dataloader().sampler
    per_rank = []
    for rank in (0, 1):
        w = DistributedSamplerWrapper(type(sampler)(sampler.n, sampler.seed), num_replicas=2, rank=rank, shuffle=False)
        w.set_epoch(0)
        keys = list(w)
        assert all(isinstance(k, tuple) and k[1] == 0 for k in keys)
        per_rank.append([dm.datasets["train"][k]["index"] for k in keys])
    assert sorted(per_rank[0] + per_rank[1]) == [0, 1, 2, 3]
