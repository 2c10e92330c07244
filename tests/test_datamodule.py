"""EVARDataModule: metadata parsing, splits, classes, labels, batches, crops."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from _evar_dm import dm_of, rows_split, sizes
from conftest import make_task, touch_audio, write_metadata, write_wav
from datamodules import EVARDataModule
from datamodules.audio import AudioFileError
from datamodules.metadata import MetadataError


# --------------------------------------------------------------------------- acceptance: real CSVs
@pytest.fixture(scope="module")
def cremad_root(tmp_path_factory):
    from conftest import EVAR_METADATA

    src = EVAR_METADATA / "cremad.csv"
    root = tmp_path_factory.mktemp("cremad_root")
    (root / "evar" / "metadata").mkdir(parents=True)
    shutil.copy(src, root / "evar" / "metadata" / "cremad.csv")
    names = pd.read_csv(src)["file_name"]
    touch_audio(root, "cremad", names)  # empty placeholder files under the right names
    return root


def test_cremad_acceptance(cremad_root):
    dm = dm_of(cremad_root, "cremad")
    assert dm.classes == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert sizes(dm) == (5155, 732, 1551)
    assert not dm.multilabel and dm.num_classes == 6 and dm.task == "cremad"
    dm.check_files()  # every referenced file exists at work/16k/cremad/<file_name>
    assert dm.clip_samples == int(16000 * 2.5)


def test_cremad_gender_reads_cremad_folder(cremad_root):
    src = pd.read_csv(cremad_root / "evar" / "metadata" / "cremad.csv").head(30)
    src["label"] = ["Male" if i % 2 else "Female" for i in range(len(src))]
    src["split"] = ["train"] * 20 + ["valid"] * 5 + ["test"] * 5
    root = cremad_root.parent / "cremad_gender_root"
    write_metadata(root, "cremad_gender", src.to_dict("records"))
    (root / "work").symlink_to(cremad_root / "work")
    dm = dm_of(root, "cremad_gender")
    assert dm.classes == ["Female", "Male"]
    assert dm.audio_dir == root / "work" / "16k" / "cremad"
    dm.check_files()


def test_cremad_placeholder_is_read_at_load_with_row(cremad_root):
    dm = dm_of(cremad_root, "cremad")
    ds = dm.datasets["valid"]
    with pytest.raises(AudioFileError) as e:  # placeholders are empty files: only loading notices
        ds[0]
    row = int(ds.rows["index"].iloc[0])
    assert f"work/16k/cremad/{ds.rows['file_name'].iloc[0]}" in str(e.value)
    assert f"row {row} (line {row + 2})" in str(e.value) and "cremad.csv" in str(e.value)


def test_gtzan_acceptance(tmp_path, evar_metadata):
    root = tmp_path
    (root / "evar" / "metadata").mkdir(parents=True)
    shutil.copy(evar_metadata / "gtzan_reconstructed.csv", root / "evar" / "metadata" / "gtzan.csv")
    raw = pd.read_csv(root / "evar" / "metadata" / "gtzan.csv", keep_default_na=False)
    touch_audio(root, "gtzan", raw["file_name"])
    dm = dm_of(root, "gtzan")
    assert sizes(dm) == (443, 197, 290)
    assert len(dm.classes) == 10 and dm.classes == sorted(raw.loc[raw.split == "train", "label"].unique())
    unused = dm.metadata[dm.metadata["split"] == ""]
    assert len(unused) == 70
    assert set(unused["index"]) == set(np.flatnonzero(raw["split"].to_numpy() == ""))
    used = set().union(*(set(dm.datasets[s].rows["index"]) for s in ("train", "valid", "test")))
    assert used.isdisjoint(set(unused["index"])) and len(used) == 930
    dm.check_files()
    assert [len(d) for d in dm.predict_datasets()] == [443, 197, 290]


def test_gtzan_predict_unsplit_covers_every_clip(tmp_path, evar_metadata):
    """``predict_unsplit``: the 70 GTZAN clips without a split are predicted after the splits, with split
    ``none`` and their own labels; the train/valid/test datasets (and the class list) do not change."""
    root = tmp_path
    (root / "evar" / "metadata").mkdir(parents=True)
    shutil.copy(evar_metadata / "gtzan_reconstructed.csv", root / "evar" / "metadata" / "gtzan.csv")
    raw = pd.read_csv(root / "evar" / "metadata" / "gtzan.csv", keep_default_na=False)
    touch_audio(root, "gtzan", raw["file_name"])
    dm = dm_of(root, "gtzan", predict_unsplit=True)
    assert sizes(dm) == (443, 197, 290)
    parts = dm.predict_datasets()
    assert [len(d) for d in parts] == [443, 197, 290, 70]
    none = parts[-1]
    assert set(none.rows["split"]) == {"none"} and none.crop == "head"
    assert set(none.rows["index"]) == set(np.flatnonzero(raw["split"].to_numpy() == ""))
    assert sorted(i for d in parts for i in d.rows["index"]) == list(range(len(raw)))
    assert none.label_tensor().tolist() == [dm.classes.index(lab) for lab in none.rows["label"]]
    dm.check_files()


def test_predict_unsplit_maps_and_checks_labels_of_rows_without_a_split(tmp_path):
    rows = [
        {"file_name": "a.wav", "label": "60", "split": "train"},
        {"file_name": "b.wav", "label": "72", "split": "train"},
        {"file_name": "c.wav", "label": "61", "split": ""},
        {"file_name": "d.wav", "label": "62", "split": "test"},
    ]
    write_metadata(tmp_path, "t", rows)
    dm = dm_of(tmp_path, "t", task_def={"unit_sec": 1.0}, label_map="midi_to_octave", predict_unsplit=True)
    assert dm.datasets["none"].rows["label"].tolist() == ["octave_4"]
    rows[2]["label"] = "30"  # octave_1: not a class of the train split
    write_metadata(tmp_path, "t", rows)
    with pytest.raises(MetadataError, match=r"of none file 'c.wav'.*row 2 \(line 4\)"):
        dm_of(tmp_path, "t", task_def={"unit_sec": 1.0}, label_map="midi_to_octave", predict_unsplit=True)
    # without predict_unsplit the row stays unused and unchecked
    assert len(dm_of(tmp_path, "t", task_def={"unit_sec": 1.0}, label_map="midi_to_octave").datasets["none"]) == 0


def test_predict_unsplit_on_a_fold_task_covers_every_fold(tmp_path):
    rows = [{"file_name": f"{c}_{f}.wav", "label": c, "fold": f} for f in range(1, 6) for c in ("dog", "rain")]
    rows.append({"file_name": "x.wav", "label": "dog", "fold": ""})
    write_metadata(tmp_path, "esc50", rows)
    dm = dm_of(tmp_path, "esc50", fold=2, predict_unsplit=True)
    assert [len(d) for d in dm.predict_datasets()] == [8, 2, 1]
    assert sorted(i for d in dm.predict_datasets() for i in d.rows["index"]) == list(range(len(rows)))


# --------------------------------------------------------------------------- CSV rules
def test_columns_extra_ignored_unnamed_dropped_empty_split_unused(tmp_path):
    csv = (
        ",file_name,label,speaker,split\n"
        "0,a.wav,cat,s1,train\n"
        "1,b.wav,dog,s2,train\n"
        "2,c.wav,dog,s3,\n"
        "3,d.wav,cat,s4,valid\n"
        "4,e.wav,dog,s5,test\n"
    )
    write_metadata(tmp_path, "t1", csv)
    for f in "abcde":
        write_wav(tmp_path / "work/16k/t1" / f"{f}.wav", np.full(10, 0.1, np.float32))
    dm = dm_of(tmp_path, "t1", task_def={"unit_sec": 0.001})
    assert dm.classes == ["cat", "dog"]
    assert sizes(dm) == (2, 1, 1)
    assert list(dm.metadata.columns) == ["index", "file_name", "label", "split"]
    assert dm.datasets["test"][0]["index"] == 4 and dm.datasets["valid"][0]["file_name"] == "d.wav"
    assert dm.datasets["train"].rows["index"].tolist() == [0, 1]


def test_numeric_labels_sorted_numerically(tmp_path):
    write_metadata(tmp_path, "t", rows_split({"train": ["10", "2", "100", "2"], "test": ["100"]}))
    dm = dm_of(tmp_path, "t", task_def={"unit_sec": 1.0})
    assert dm.classes == ["2", "10", "100"]


def test_fold_csv_esc50_style(tmp_path, trainer_kwargs):
    rows = [
        {"file_name": f"{c}_{f}_{k}.wav", "label": c, "fold": f, "target": 7}
        for f in range(1, 6)
        for c in ("dog", "rain")
        for k in range(2)
    ]
    make_task(tmp_path, "esc50", rows, samples=400)
    for fold in (1, 3, 5):
        dm = dm_of(tmp_path, "esc50", fold=fold, unit_sec=0.02)
        assert sizes(dm) == (16, 0, 4)
        assert set(dm.datasets["test"].rows["file_name"].str.split("_").str[1]) == {str(fold)}
        assert str(fold) not in set(dm.datasets["train"].rows["file_name"].str.split("_").str[1])
        assert dm.val_dataloader() == []  # no valid split: Lightning skips validation
        assert [len(d) for d in dm.predict_datasets()] == [16, 4]
    with pytest.raises(MetadataError, match="'valid'.*empty.*fold tasks have no valid split"):
        dm.predict_splits = ["valid"]
        dm.predict_datasets()

    # Lightning fit on a fold task: trains on the train folds, runs no validation, epochs reshuffle
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(320, 2)
            self.seen: list[tuple[int, list[int]]] = []
            self.n_val = 0

        def training_step(self, b, i):
            self.seen.append((self.current_epoch, b["index"].tolist()))
            return torch.nn.functional.cross_entropy(self.lin(b["audio"]), b["label"])

        def validation_step(self, b, i):
            self.n_val += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    m = Tiny()
    dm = EVARDataModule(evar_root=str(tmp_path), task="esc50", fold=2, batch_size=4, unit_sec=0.02, seed=3)
    pl.Trainer(max_epochs=2, **trainer_kwargs).fit(m, dm)
    assert m.n_val == 0
    ep0 = [i for e, b in m.seen if e == 0 for i in b]
    ep1 = [i for e, b in m.seen if e == 1 for i in b]
    test_rows = set(dm.datasets["test"].rows["index"])
    assert sorted(ep0) == sorted(ep1) == sorted(set(range(20)) - test_rows)
    assert ep0 != ep1


def test_fold_errors(tmp_path):
    rows = [{"file_name": f"{f}.wav", "label": "x" if f % 2 else "y", "fold": f} for f in range(1, 6)]
    write_metadata(tmp_path, "esc50", rows)
    with pytest.raises(MetadataError, match=r"fold=6 is out of range .*esc50.csv.*folds 1\.\.5"):
        dm_of(tmp_path, "esc50", fold=6)
    with pytest.raises(MetadataError, match=r"fold=0 is out of range"):
        dm_of(tmp_path, "esc50", fold=0)
    rows[3]["fold"] = 9
    write_metadata(tmp_path, "esc50", rows)
    with pytest.raises(MetadataError, match=r"Fold 9 in metadata .*esc50.csv row 3 \(line 5\) is out of range 1\.\.5"):
        dm_of(tmp_path, "esc50")
    rows[3]["fold"] = "two"
    write_metadata(tmp_path, "esc50", rows)
    with pytest.raises(MetadataError, match=r"Bad fold 'two' in metadata .*esc50.csv row 3"):
        dm_of(tmp_path, "esc50")


def test_fold_column_without_table_entry(tmp_path):
    rows = [{"file_name": f"{f}_{c}.wav", "label": c, "fold": f} for f in (1, 2, 3) for c in "ab"]
    write_metadata(tmp_path, "myfolds", rows)
    dm = dm_of(tmp_path, "myfolds", fold=3, task_def={"unit_sec": 1.0})
    assert sizes(dm) == (4, 0, 2)


def test_multilabel_csv(tmp_path):
    rows = rows_split({"train": ["Bark,Dog", "Rain", "Dog,Rain,Wind"], "valid": ["Dog"], "test": ["Wind,Bark"]})
    make_task(tmp_path, "fsd50k", rows, samples=100)
    dm = dm_of(tmp_path, "fsd50k", unit_sec=0.01)
    assert dm.multilabel and dm.classes == ["Bark", "Dog", "Rain", "Wind"]
    b = next(iter(dm.test_dataloader()))
    assert b["label"].dtype == torch.float32 and b["label"].shape == (1, 4)
    assert b["label"].tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert dm.datasets["train"].label_tensor().tolist() == [[1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 1, 1]]


def test_commas_need_a_multilabel_declaration(tmp_path):
    write_metadata(tmp_path, "ml", rows_split({"train": ["a,b", "c"], "test": ["c"]}))
    with pytest.raises(MetadataError, match=r"Label 'a,b' in metadata .*ml.csv row 0 \(line 2\) contains ','"):
        dm_of(tmp_path, "ml", task_def={"unit_sec": 1.0})
    dm = dm_of(tmp_path, "ml", task_def={"unit_sec": 1.0, "multilabel": True})
    assert dm.multilabel and dm.classes == ["a", "b", "c"]


def test_multilabel_unknown_class_in_test(tmp_path):
    write_metadata(tmp_path, "fsd50k", rows_split({"train": ["a,b"], "test": ["a,zzz"]}))
    with pytest.raises(
        MetadataError, match=r"'zzz' of test file 'test_0.wav' in metadata .*fsd50k.csv row 1 \(line 3\)"
    ):
        dm_of(tmp_path, "fsd50k")


def test_label_not_in_train_classes(tmp_path):
    write_metadata(tmp_path, "cremad", rows_split({"train": ["ANG", "SAD"], "valid": ["ANG", "HAP"], "test": ["SAD"]}))
    with pytest.raises(MetadataError) as e:
        dm_of(tmp_path, "cremad")
    msg = str(e.value)
    assert (
        "'HAP'" in msg and "valid_1.wav" in msg and "row 3 (line 5)" in msg and "not a class of the train split" in msg
    )


# --------------------------------------------------------------------------- label maps
def test_label_map_midi_to_octave(tmp_path):
    write_metadata(tmp_path, "nspitch", rows_split({"train": ["60", "69", "21", "108", "59"], "test": ["71"]}))
    dm = dm_of(tmp_path, "nspitch", label_map="midi_to_octave")
    assert dm.classes == ["octave_0", "octave_3", "octave_4", "octave_8"]
    assert dm.metadata["label"].tolist() == ["octave_4", "octave_4", "octave_0", "octave_8", "octave_3", "octave_4"]
    assert dm.datasets["test"].label_tensor().tolist() == [2]
    dm = dm_of(tmp_path, "nspitch", label_map="midi_to_octave_number")
    assert dm.classes == ["0", "3", "4", "8"]


def test_label_map_midi_bad_label_names_row(tmp_path):
    write_metadata(tmp_path, "nspitch", rows_split({"train": ["60", "C4"], "test": ["60"]}))
    with pytest.raises(MetadataError, match=r"cannot map label 'C4' in metadata .*nspitch.csv row 1 \(line 3\)"):
        dm_of(tmp_path, "nspitch", label_map="midi_to_octave")


def test_label_map_dict_merges_and_drops(tmp_path):
    write_metadata(tmp_path, "cremad", rows_split({"train": ["ANG", "DIS", "NEU", "SAD"], "test": ["DIS", "NEU"]}))
    dm = dm_of(tmp_path, "cremad", label_map={"ANG": "neg", "DIS": "neg", "SAD": "neg", "NEU": None})
    assert dm.classes == ["neg"] and sizes(dm) == (3, 0, 1)
    assert dm.metadata.loc[dm.metadata["split"] == "", "index"].tolist() == [2, 5]
    # YAML keys may be integers; labels not in the dict are kept
    write_metadata(tmp_path, "nspitch", rows_split({"train": ["60", "61", "62"], "test": ["60"]}))
    dm = dm_of(tmp_path, "nspitch", label_map={60: "C", 61: "C#"})
    assert dm.classes == ["62", "C", "C#"]


def test_unknown_named_label_map(tmp_path):
    write_metadata(tmp_path, "nspitch", rows_split({"train": ["60"], "test": ["60"]}))
    with pytest.raises(ValueError, match="Unknown label_map 'midi_to_bananas'.*midi_to_octave"):
        dm_of(tmp_path, "nspitch", label_map="midi_to_bananas")


# --------------------------------------------------------------------------- bad CSVs / requests
@pytest.mark.parametrize("drop", ["file_name", "label"])
def test_csv_without_required_column(tmp_path, drop):
    rows = [{k: v for k, v in r.items() if k != drop} for r in rows_split({"train": ["a"], "test": ["a"]})]
    csv = write_metadata(tmp_path, "cremad", rows)
    with pytest.raises(MetadataError) as e:
        dm_of(tmp_path, "cremad")
    assert str(csv) in str(e.value) and f"no column(s) ['{drop}']" in str(e.value)


def test_csv_without_split_or_fold(tmp_path):
    csv = write_metadata(tmp_path, "cremad", [{"file_name": "a.wav", "label": "x"}])
    with pytest.raises(MetadataError) as e:
        dm_of(tmp_path, "cremad")
    assert str(csv) in str(e.value) and "neither a 'split' nor a 'fold' column" in str(e.value)


def test_bad_split_value_names_row(tmp_path):
    rows = rows_split({"train": ["a"], "test": ["a"]})
    rows[1]["split"] = "eval"
    write_metadata(tmp_path, "cremad", rows)
    with pytest.raises(MetadataError, match=r"Bad split 'eval' in metadata .*cremad.csv row 1 \(line 3\)"):
        dm_of(tmp_path, "cremad")


def test_missing_metadata_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Metadata CSV not found: .*evar/metadata/cremad.csv"):
        dm_of(tmp_path, "cremad")


def test_requested_split_empty(tmp_path):
    write_metadata(tmp_path, "cremad", rows_split({"train": ["a", "b"], "valid": ["a"]}))
    dm = dm_of(tmp_path, "cremad")
    with pytest.raises(MetadataError, match=r"Requested split 'test' of task 'cremad' is empty in .*cremad.csv"):
        dm.test_dataloader()
    dm.predict_splits = ["train", "test"]
    with pytest.raises(MetadataError, match="'test'.*empty"):
        dm.predict_dataloader()
    assert [len(d) for d in EVARDataModule(evar_root=str(tmp_path), task="cremad").predict_datasets()] == [2, 1]


def test_unknown_task_lists_known(tmp_path):
    with pytest.raises(KeyError) as e:
        dm_of(tmp_path, "gise51")
    msg = str(e.value)
    assert "Unknown task 'gise51'" in msg and "esc50" in msg and "cremad" in msg and "gise51.yaml" in msg


def test_bad_predict_split_name():
    with pytest.raises(ValueError, match="predict_splits.*'val'"):
        EVARDataModule(evar_root="/nonexistent", task="cremad", predict_splits=["val"])


def test_evar_env_var(tmp_path, monkeypatch):
    write_metadata(tmp_path, "cremad", rows_split({"train": ["a", "b"], "test": ["a"]}))
    monkeypatch.setenv("EVAR", str(tmp_path))
    dm = EVARDataModule(task="cremad")
    dm.setup()
    assert dm.root == tmp_path and sizes(dm) == (2, 0, 1)
    monkeypatch.delenv("EVAR")
    with pytest.raises(ValueError, match=r"\$EVAR"):
        EVARDataModule(task="cremad").setup()
