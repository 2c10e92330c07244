"""FeatureDataModule: splits from index.csv, train standardiser, seeded class-covering valid carve-out."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from _fake_run import write_run
from datamodules.features import FeatureDataModule, carve_valid


def test_splits_standardiser_and_batches(tmp_path):
    d = write_run(tmp_path / "r", {"train": 10, "valid": 3, "test": 4})
    dm = FeatureDataModule(str(d))
    dm.setup("fit")
    assert not dm.carved_valid
    assert [len(dm.datasets[s]) for s in ("train", "valid", "test")] == [30, 9, 12]
    feats = torch.load(d / "features.pt")
    idx = pd.read_csv(d / "index.csv")
    train_rows = sorted(idx[idx.split == "train"].row)
    x = feats[train_rows].double()
    assert torch.allclose(dm.mean.double(), x.mean(0), atol=1e-6)
    assert torch.allclose(dm.std.double(), x.std(0, unbiased=False), atol=1e-6)
    assert dm.batch_size == 30  # min(200, N_train)
    b = next(iter(dm.test_dataloader()))
    assert torch.equal(b["embedding"], feats[b["row"]])  # raw embeddings; the probe standardises
    assert torch.equal(b["label"], torch.load(d / "gts.pt")[b["row"]])
    assert dm.classes == ["a", "b", "c"] and dm.num_classes == 3 and dm.embed_dim == 5
    z = dm.transform(x.float())
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-5)


def test_default_batch_is_capped_at_200(tmp_path):
    dm = FeatureDataModule(str(write_run(tmp_path / "r", {"train": 80, "valid": 1, "test": 1})))
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 240 and dm.batch_size == 200
    assert FeatureDataModule(str(tmp_path / "r"), batch_size=7).batch_size == 7


def test_carved_valid_covers_every_class_and_is_seeded(tmp_path):
    d = write_run(tmp_path / "r", {"train": 20, "test": 2})
    a, b, c = (FeatureDataModule(str(d), seed=s) for s in (1, 1, 2))
    for m in (a, b, c):
        m.setup("fit")
        assert m.carved_valid
        tr, va = set(m.rows["train"].tolist()), set(m.rows["valid"].tolist())
        assert not tr & va and len(tr | va) == 60
        assert len(va) == 6  # 10% of 20 per class
        assert set(m.gts[m.rows["valid"]].tolist()) == {0, 1, 2}
        # standardiser from the remaining train rows only
        assert torch.allclose(m.mean, m.features[m.rows["train"]].mean(0), atol=1e-5)
    assert torch.equal(a.rows["valid"], b.rows["valid"])
    assert not torch.equal(a.rows["valid"], c.rows["valid"])


def test_multilabel_gts_and_carve(tmp_path):
    d = write_run(tmp_path / "r", {"train": 10, "test": 2}, multilabel=True)
    dm = FeatureDataModule(str(d))
    dm.setup("fit")
    assert dm.multilabel
    assert (dm.gts[dm.rows["valid"]].sum(0) > 0).all()
    b = next(iter(dm.train_dataloader()))
    assert b["label"].shape[1] == 3 and b["label"].dtype == torch.float32
    gts = torch.zeros(10, 2)
    gts[:, 0] = 1
    gts[9, 1] = 1
    tr, va = carve_valid(gts, torch.arange(10), 0.1, 0, 2)
    assert 9 in va.tolist()  # the only clip of class 1 is taken so that valid covers it


@pytest.mark.parametrize(
    "breakage,match",
    [
        ("missing_gts", r"gts\.pt not found"),
        ("bad_split", r"index\.csv: row \d+: split 'dev'"),
        ("rows", r"index\.csv: column row must list"),
        ("labels", r"gts\.pt: labels outside 0\.\.2"),
    ],
)
def test_bad_run_folder_errors_name_the_file(tmp_path, breakage, match):
    d = write_run(tmp_path / "r", {"train": 3, "test": 1})
    if breakage == "missing_gts":
        (d / "gts.pt").unlink()
    elif breakage == "bad_split":
        df = pd.read_csv(d / "index.csv")
        df.loc[2, "split"] = "dev"
        df.to_csv(d / "index.csv", index=False)
    elif breakage == "rows":
        df = pd.read_csv(d / "index.csv")
        df.loc[0, "row"] = 99
        df.to_csv(d / "index.csv", index=False)
    else:
        g = torch.load(d / "gts.pt")
        g[0] = 7
        torch.save(g, d / "gts.pt")
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        FeatureDataModule(str(d)).setup("fit")
