"""configs/data/*.yaml of the data layer parse as LightningCLI would, and the tasks tables resolve."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
from jsonargparse import ArgumentParser

from conftest import REPO_ROOT, make_task, write_metadata
from datamodules import EVARDataModule, TASKS, get_task, sr_dir
from datamodules.tasks import TaskSpec, UnknownTaskError, load_task_yaml, register_task

DATA_CONFIGS = REPO_ROOT / "configs" / "data"


def parse_data(config: Path, *overrides: str) -> EVARDataModule:
    """Parse a data config like ``train.py --data <config> --data.<arg> <value>`` and instantiate it."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    cfg = parser.parse_args(["--data", str(config), *overrides])
    dm = parser.instantiate(cfg).data
    assert isinstance(dm, EVARDataModule)
    return dm


@pytest.mark.parametrize("task", ["synth_octave_sine", "synth_octave_saw"])
def test_synthetic_configs(task, synthetic_root):
    dm = parse_data(DATA_CONFIGS / f"{task}.yaml", "--data.evar_root", str(synthetic_root))
    assert dm.task == task and dm.sample_rate == 16000
    dm.setup()
    assert len(dm.classes) == 5 and len(dm.datasets["train"]) > 0
    batch = next(iter(dm.predict_dataloader()))
    assert batch["audio"].shape[1] == 8000


def test_cremad_config(tmp_path):
    rows = [
        {"file_name": f"{i}.wav", "label": lab, "split": sp}
        for i, (lab, sp) in enumerate([("ANG", "train"), ("SAD", "train"), ("SAD", "valid"), ("ANG", "test")])
    ]
    make_task(tmp_path, "cremad", rows, samples=100)
    dm = parse_data(DATA_CONFIGS / "cremad.yaml", "--data.evar_root", str(tmp_path), "--data.num_workers", "0")
    dm.setup()
    assert dm.classes == ["ANG", "SAD"] and dm.clip_samples == 40000
    assert next(iter(dm.test_dataloader()))["audio"].shape == (1, 40000)


def test_esc50_config_is_a_fold_task(tmp_path):
    rows = [{"file_name": f"{f}_{c}.wav", "label": c, "fold": f} for f in range(1, 6) for c in ("a", "b")]
    write_metadata(tmp_path, "esc50", rows)
    dm = parse_data(DATA_CONFIGS / "esc50.yaml", "--data.evar_root", str(tmp_path), "--data.fold", "4")
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "valid", "test")] == [8, 0, 2]


def test_nspitch_octave_config(tmp_path):
    rows = [{"file_name": f"{m}.wav", "label": str(m), "split": "train"} for m in (40, 60, 72)]
    rows.append({"file_name": "61.wav", "label": "61", "split": "test"})
    write_metadata(tmp_path, "nspitch", rows)
    dm = parse_data(DATA_CONFIGS / "nspitch_octave.yaml", "--data.evar_root", str(tmp_path))
    dm.setup()
    assert dm.classes == ["octave_2", "octave_4", "octave_5"]
    assert dm.audio_dir == tmp_path / "work" / "16k" / "nsynth"


def test_gise51_config_defines_a_task(tmp_path):
    rows = [
        {"file_name": f"{i}.flac", "label": lab, "split": sp}
        for i, (lab, sp) in enumerate([("Bark", "train"), ("Siren", "train"), ("Bark", "test")])
    ]
    make_task(tmp_path, "gise51", rows, samples=100)
    dm = parse_data(DATA_CONFIGS / "gise51.yaml", "--data.evar_root", str(tmp_path))
    dm.setup()
    assert dm.task_spec.unit_sec == 5.0 and dm.classes == ["Bark", "Siren"]
    assert dm.datasets["test"][0]["audio"].shape == (80000,)
    # the same definition pointing at a CSV outside the EVAR root (absolute metadata path)
    outside = tmp_path / "elsewhere.csv"
    (tmp_path / "evar/metadata/gise51.csv").rename(outside)
    dm = parse_data(
        DATA_CONFIGS / "gise51.yaml",
        "--data.evar_root",
        str(tmp_path),
        "--data.task_def",
        f'{{"unit_sec": 2.0, "metadata": "{outside}"}}',
    )
    dm.setup()
    assert dm.metadata_path == outside and dm.clip_samples == 32000


def test_task_table_matches_design():
    expected = {  # the EVAR task table: (unit_sec, folds, audio folder)
        "esc50": (5.0, 5, "esc50"),
        "us8k": (4.0, 10, "us8k"),
        "gtzan": (30.0, 0, "gtzan"),
        "cremad": (2.5, 0, "cremad"),
        "cremad_gender": (2.5, 0, "cremad"),
        "vc1": (8.2, 0, "vc1"),
        "voxforge": (5.8, 0, "voxforge"),
        "surge": (4.0, 0, "surge"),
        "nsynth": (4.0, 0, "nsynth"),
        "nspitch": (4.0, 0, "nsynth"),
        "spcv2": (1.0, 0, "spcv2"),
        "fsd50k": (7.6358, 0, "fsd50k"),
        "as20k": (10.0, 0, "as"),
        "nsvelocity": (4.0, 0, "nsynth"),
        # the study's subsets (python -m analysis tasks build): clip length and audio of their source task
        "vc1_gender_nationality": (8.2, 0, "vc1"),
        "voxforge_balanced": (5.8, 0, "voxforge"),
        "nspitch_subset": (4.0, 0, "nsynth"),
        "nsynth_subset": (4.0, 0, "nsynth"),
    }
    got = {k: (v.unit_sec, v.folds, v.audio_folder) for k, v in TASKS.items()}
    assert got == expected
    assert TASKS["fsd50k"].multilabel and not TASKS["cremad"].multilabel
    assert [sr_dir(r) for r in (16000, 22000, 32000, 44100, 48000)] == ["16k", "22k", "32k", "44k", "48k"]


def test_task_sources(tmp_path):
    y = tmp_path / "mytask.yaml"
    y.write_text("unit_sec: 3\nfolds: 4\nfolder: shared_audio\nmultilabel: true\n")
    spec = get_task("mytask", task_def=str(y))
    assert spec == TaskSpec("mytask", 3.0, folds=4, folder="shared_audio", multilabel=True)
    assert load_task_yaml(y, name="mytask") == spec
    # a dict without unit_sec overrides fields of a table task
    assert get_task("cremad", task_def={"metadata": "x.csv"}) == TaskSpec(
        "cremad", 2.5, metadata="x.csv", description=TASKS["cremad"].description
    )
    with pytest.raises(UnknownTaskError, match="Unknown task 'mytask'"):
        get_task("mytask", evar_root=tmp_path)
    (tmp_path / "evar/metadata").mkdir(parents=True)
    (tmp_path / "evar/metadata/mytask.yaml").write_text(y.read_text())
    assert get_task("mytask", evar_root=tmp_path) == spec
    register_task(TaskSpec("registered_tmp_task", 1.5))
    assert get_task("registered_tmp_task").unit_sec == 1.5
    with pytest.raises(ValueError, match="no 'unit_sec'"):
        get_task("newtask", task_def={"folds": 2})
    with pytest.raises(ValueError, match="unknown task field.*'unitsec'"):
        get_task("newtask", task_def={"unitsec": 2})
    y.write_text("unit_sec: [1\n")
    with pytest.raises(ValueError, match="mytask.yaml is not valid YAML"):
        load_task_yaml(y)
