"""Bad inputs at the data readers: duplicate rows, a file in two splits, paths leaving the audio folder,
truncated WAVs, commas in single-label tasks, and the README's list of bad inputs, each naming the CSV row."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datamodules import EVARDataModule
from datamodules.audio import AudioFileError
from datamodules.metadata import MetadataError
from datamodules.tasks import UnknownTaskError

from conftest import make_task, write_metadata, write_wav


# ============================================================================ 4. data
def _rows() -> list[dict]:
    return [
        {"file_name": f"{c}_{s}{i}.wav", "label": c, "split": s}
        for s, k in (("train", 2), ("valid", 1), ("test", 1))
        for c in ("a", "b")
        for i in range(k)
    ]


def _dm(root: Path, task: str, **kw) -> EVARDataModule:
    dm = EVARDataModule(evar_root=str(root), task=task, batch_size=4, task_def={"unit_sec": 0.05}, **kw)
    dm.setup()
    return dm


def _csv(root: Path, task: str) -> str:
    return str(root / "evar" / "metadata" / f"{task}.csv")


def test_duplicate_row_names_both_rows_unless_allowed(tmp_path):
    rows = _rows()
    rows.insert(3, dict(rows[0]))
    make_task(tmp_path, "dup", rows)
    with pytest.raises(MetadataError) as e:
        _dm(tmp_path, "dup")
    msg = str(e.value)
    assert _csv(tmp_path, "dup") in msg and "'a_train0.wav' is listed twice in the train split" in msg
    assert "row 0 (line 2)" in msg and "row 3 (line 5)" in msg
    assert len(_dm(tmp_path, "dup", allow_duplicates=True).datasets["train"]) == 5


def test_same_file_in_two_splits_is_an_error_even_with_allow_duplicates(tmp_path):
    rows = _rows() + [{"file_name": "./a_train0.wav", "label": "a", "split": "test"}]
    make_task(tmp_path, "leak", rows)
    for allow in (False, True):
        with pytest.raises(MetadataError) as e:
            _dm(tmp_path, "leak", allow_duplicates=allow)
        msg = str(e.value)
        assert "in the train split" in msg and "in the test split" in msg and "row 0 (line 2)" in msg
        assert f"row {len(rows) - 1} (line {len(rows) + 1})" in msg


@pytest.mark.parametrize("name", ["../outside.wav", "sub/../../outside.wav", "/etc/outside.wav"])
def test_file_name_outside_the_audio_folder_is_refused(tmp_path, name):
    rows = _rows()
    make_task(tmp_path, "esc", rows)
    rows[1]["file_name"] = name
    write_metadata(tmp_path, "esc", rows)
    with pytest.raises(MetadataError) as e:
        _dm(tmp_path, "esc")
    assert f"file_name {name!r}" in str(e.value) and "row 1 (line 3)" in str(e.value)
    assert "outside the task's audio folder" in str(e.value)


def test_truncated_wav_is_an_error_naming_file_and_row(tmp_path):
    rows = _rows()
    make_task(tmp_path, "trunc", rows, samples=800)
    p = tmp_path / "work" / "16k" / "trunc" / rows[2]["file_name"]
    p.write_bytes(p.read_bytes()[:-1000])  # FLOAT wav: 4 bytes per frame, 250 frames cut
    dm = _dm(tmp_path, "trunc")
    with pytest.raises(AudioFileError) as e:
        dm.datasets["train"][2]
    msg = str(e.value)
    assert f"work/16k/trunc/{rows[2]['file_name']}" in msg and "row 2 (line 4)" in msg
    assert "header promises 800 frames" in msg and "the file holds 550" in msg
    dm.datasets["train"][0]  # intact files still load


def test_comma_in_a_single_label_task_names_the_row(tmp_path):
    rows = _rows()
    rows[4]["label"] = "a,b"
    make_task(tmp_path, "comma", rows)
    with pytest.raises(MetadataError, match=r"Label 'a,b' in metadata .*comma.csv row 4 \(line 6\) contains ','"):
        _dm(tmp_path, "comma")


def test_task_without_train_rows_says_so(tmp_path):
    make_task(tmp_path, "notrain", [r for r in _rows() if r["split"] != "train"])
    with pytest.raises(MetadataError, match=r"notrain.csv has no train rows"):
        _dm(tmp_path, "notrain")


# -- the README's bad-input list: missing/corrupt/empty/NaN audio, wrong sample rate, unknown label,
#    malformed CSV, fold out of range, empty split, unknown task
def _load_all(dm: EVARDataModule) -> None:
    for ds in dm.datasets.values():
        for i in range(len(ds)):
            ds[i]


def _audio(root: Path, task: str, row: dict) -> Path:
    return root / "work" / "16k" / task / row["file_name"]


README_AUDIO_CASES = {
    "missing audio": (lambda p: p.unlink(), FileNotFoundError, "Audio file not found"),
    "corrupt audio": (lambda p: p.write_bytes(b"RIFF" + os.urandom(60)), AudioFileError, "unreadable or corrupt"),
    "empty audio": (lambda p: write_wav(p, np.zeros(0, np.float32)), AudioFileError, "is empty"),
    "NaN audio": (lambda p: write_wav(p, np.full(100, np.nan, np.float32)), AudioFileError, "NaN/inf"),
    "wrong sample rate": (
        lambda p: write_wav(p, np.zeros(100, np.float32), 22050),
        AudioFileError,
        "Expected sample rate 16000",
    ),
}


@pytest.mark.parametrize("case", sorted(README_AUDIO_CASES))
def test_readme_bad_audio_names_file_and_row(tmp_path, case):
    mutate, exc, problem = README_AUDIO_CASES[case]
    rows = _rows()
    make_task(tmp_path, "bad", rows)
    mutate(_audio(tmp_path, "bad", rows[1]))
    with pytest.raises(exc) as e:
        _load_all(_dm(tmp_path, "bad"))
    assert problem in str(e.value) and rows[1]["file_name"] in str(e.value) and "bad.csv row 1 (line 3)" in str(e.value)


def test_readme_unknown_label_names_the_row(tmp_path):
    rows = _rows()
    rows[-1]["label"] = "zzz"
    make_task(tmp_path, "lab", rows)
    with pytest.raises(
        MetadataError, match=rf"'zzz' of test file 'b_test0.wav' in metadata .*lab.csv row {len(rows) - 1}"
    ):
        _dm(tmp_path, "lab")


def test_readme_malformed_csv_names_the_file(tmp_path):
    write_metadata(tmp_path, "mal", 'file_name,label,split\n"a.wav,a,train\n')
    with pytest.raises(MetadataError, match=r"Cannot parse metadata CSV .*mal.csv"):
        _dm(tmp_path, "mal")


def test_readme_fold_out_of_range_names_the_row(tmp_path):
    rows = [{"file_name": f"{c}{f}.wav", "label": c, "fold": f} for f in (1, 2, 7) for c in "ab"]
    write_metadata(tmp_path, "folds", rows)
    with pytest.raises(MetadataError, match=r"Fold 7 in metadata .*folds.csv row 4 \(line 6\) is out of range 1..3"):
        EVARDataModule(evar_root=str(tmp_path), task="folds", task_def={"unit_sec": 1.0, "folds": 3}).setup()


def test_readme_empty_split_and_unknown_task(tmp_path):
    make_task(tmp_path, "novalid", [r for r in _rows() if r["split"] != "valid"])
    with pytest.raises(MetadataError, match=r"Requested split 'valid' of task 'novalid' is empty in .*novalid.csv"):
        _dm(tmp_path, "novalid").val_dataloader()
    with pytest.raises(UnknownTaskError, match="Unknown task 'no_such_task'"):
        EVARDataModule(evar_root=str(tmp_path), task="no_such_task").setup()
