"""Streaming the run folder's rows (analysis/runs/write.py): tensor files written block by block, per-process
row spools, dataset order, and the run folder they produce."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from analysis.runs import write as R
from analysis.runs.read import read_features


@pytest.mark.parametrize("shape,dtype", [((7,), torch.float32), ((), torch.int64), ((3,), torch.float32)])
def test_tensor_file_writer_writes_an_ordinary_torch_file(tmp_path: Path, shape, dtype) -> None:
    """Written in uneven blocks, read back by torch.load (also memory-mapped); the zip's CRC-32 is right."""
    rows = 1001
    ref = (torch.randn(rows, *shape) * 100).to(dtype)
    w = R.TensorFileWriter(tmp_path / "t.pt", rows, shape, dtype)
    for a, b in ((0, 1), (1, 400), (400, 1001)):
        w.write(ref[a:b])
    w.close()
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True), ref)
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True, mmap=True), ref)
    with zipfile.ZipFile(tmp_path / "t.pt") as z:
        assert z.testzip() is None
    assert not list(tmp_path.glob(".placeholder*"))


def test_tensor_file_writer_checks_rows(tmp_path: Path) -> None:
    w = R.TensorFileWriter(tmp_path / "t.pt", 3, (2,), torch.float32)
    with pytest.raises(ValueError, match="does not match"):
        w.write(torch.zeros(1, 3))
    w.write(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="more than 3 rows"):
        w.write(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="2 rows written, 3 expected"):
        w.close()
    empty = R.TensorFileWriter(tmp_path / "e.pt", 0, (4,), torch.float32)
    empty.close()
    assert torch.load(tmp_path / "e.pt").shape == (0, 4)


def _spool(parent: Path, name: str, index: list[int], multilabel: bool = False, embed: bool = True) -> R.RowSpool:
    s = R.RowSpool.create(parent, name)
    idx = torch.tensor(index)
    label = torch.stack([idx % 2, idx % 3 == 0], 1).float() if multilabel else idx % 3
    half = len(index) // 2
    for sl in (slice(0, half), slice(half, len(index))):  # two appends
        s.append(
            label=label[sl],
            index=idx[sl],
            split=["train" if i % 2 else "test" for i in index[sl]],
            file_name=[f"dir/clip,{i}.wav" for i in index[sl]],
            embedding=idx[sl, None].float().repeat(1, 5) if embed else None,
        )
    s.close()
    return s


def test_spools_read_any_rows_and_merge_in_dataset_order(tmp_path: Path) -> None:
    a = _spool(tmp_path, "a", [10, 2, 7, 30])
    b = _spool(tmp_path, "b", [5, 1, 20])
    got = a.read(torch.tensor([3, 0, 3]))
    assert got["index"].tolist() == [30, 10, 30] and got["embedding"][:, 0].tolist() == [30.0, 10.0, 30.0]
    assert got["file_name"] == ["dir/clip,30.wav", "dir/clip,10.wav", "dir/clip,30.wav"]
    order = R.RowOrder.of([a.read_index(), b.read_index()])
    assert order.index.tolist() == [1, 2, 5, 7, 10, 20, 30]
    blocks = list(R.RowBlocks.from_spools([a, b], block_rows=3).blocks)
    assert [len(x["index"]) for x in blocks] == [3, 3, 1]
    assert torch.cat([x["embedding"][:, 0] for x in blocks]).tolist() == [1, 2, 5, 7, 10, 20, 30]
    assert sum((x["split"] for x in blocks), []) == ["train", "test", "train", "train", "test", "test", "test"]
    with pytest.raises(RuntimeError, match=r"predicted twice \(dataset index \[2\]\)"):
        R.RowOrder.of([a.read_index(), torch.tensor([2])])
    a.remove()
    assert not a.folder.exists()


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("embed", [True, False])
def test_run_folder_from_spools(tmp_path: Path, multilabel: bool, embed: bool) -> None:
    classes = ["a", "b", "c"] if not multilabel else ["odd", "three"]
    spools = [_spool(tmp_path, "a", [4, 0, 6], multilabel, embed), _spool(tmp_path, "b", [3, 1], multilabel, embed)]
    out = R.write_run_folder(
        tmp_path / "run",
        over_zero=torch.zeros(1, 2, len(classes)),
        classes=classes,
        stats={"x": 1},
        rows=R.RowBlocks.from_spools(spools, block_rows=2),
        manifest={"task": "t"},
        top_clips={"score": torch.zeros(1, 2, 3)},
    )
    names = {p.name for p in out.iterdir()}
    assert ("features.pt" in names) == embed and {"gts.pt", "index.csv", "top_clips.pt", "manifest.json"} <= names
    table = pd.read_csv(out / "index.csv", keep_default_na=False)
    assert table["index"].tolist() == [0, 1, 3, 4, 6] and table["row"].tolist() == list(range(5))
    assert table["file_name"][2] == "dir/clip,3.wav"  # quoted in the CSV, read back intact
    man = json.loads((out / "manifest.json").read_text())
    assert man["n_clips"] == 5 and man["features"] == embed and man["task"] == "t"
    assert man["data_list_sha256"] == R.data_list_sha256(table)  # the streamed hash = the table's
    gts = torch.load(out / "gts.pt")
    if multilabel:
        assert gts.dtype == torch.float32 and gts.shape == (5, 2) and table["label"][2] == "odd,three"
    else:
        assert gts.tolist() == [0, 1, 0, 1, 0] and table["label"].tolist() == ["a", "b", "a", "b", "a"]
    if embed:
        assert torch.load(out / "features.pt")[:, 0].tolist() == [0, 1, 3, 4, 6]
        (out / "classes.txt").write_text("\n".join(classes) + "\n")
        assert read_features(out).features.shape == (5, 5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_rewriting_without_embeddings_removes_the_old_ones(tmp_path: Path) -> None:
    common = dict(over_zero=torch.zeros(1, 1, 3), classes=["a", "b", "c"], stats={}, manifest={})
    R.write_run_folder(tmp_path / "run", rows=R.RowBlocks.from_spools([_spool(tmp_path, "a", [0, 1])]), **common)
    assert (tmp_path / "run" / "features.pt").exists()
    with pytest.raises(R.OutputExistsError):
        R.write_run_folder(tmp_path / "run", rows=R.RowBlocks.from_spools([_spool(tmp_path, "b", [0, 1])]), **common)
    R.write_run_folder(
        tmp_path / "run",
        rows=R.RowBlocks.from_spools([_spool(tmp_path, "c", [0, 1], embed=False)]),
        overwrite=True,
        **common,
    )
    assert not (tmp_path / "run" / "features.pt").exists() and (tmp_path / "run" / "gts.pt").exists()
