"""The study's task builders (``python -m analysis tasks build``) on small fake VoxCeleb1 / VoxForge / NSynth
metadata: every selection rule, determinism, and bad input."""

from __future__ import annotations

import doctest
from pathlib import Path

import pandas as pd
import pytest

import datamodules.study_tasks as study_tasks
from analysis.app.cli import main as cli_main
from conftest import touch_audio, write_metadata
from datamodules import EVARDataModule

GENDER_NAT = {
    "id001": ("m", "USA"),
    "id002": ("f", "USA"),
    "id003": ("m", "New Zealand"),
    "id004": ("f", "India"),
    "id005": ("m", ""),
    "id006": ("", "UK"),
}  # 005/006 lack a label


def _vc1_root(root: Path, clips_per_speaker: int = 12) -> tuple[Path, Path]:
    rows = []
    for spk in list(GENDER_NAT) + ["id007"]:  # id007 is not in vox1_meta at all
        for k in range(clips_per_speaker):
            split = "test" if k % 6 == 0 else "valid" if k % 6 == 1 else "train"
            rows.append({"file_name": f"wav/{spk}/v{k // 4}/{k:05d}.wav", "label": spk, "split": split})
    write_metadata(root, "vc1", rows)
    meta = root / "vox1_meta.csv"
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    lines += [f"{spk}\tName_{spk}\t{g}\t{n}\tdev" for spk, (g, n) in GENDER_NAT.items()]
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "evar" / "metadata" / "vc1.csv", meta


def tasks(*argv: str) -> int:
    return cli_main(["tasks", *argv])


def test_vc1_gender_nationality_rules(tmp_path, capsys):
    src, meta = _vc1_root(tmp_path)
    assert (
        tasks("build", "vc1_gender_nationality", "--vox1-meta", str(meta), "--evar-root", str(tmp_path), "--size", "30")
        == 0
    )
    assert "30 clips" in capsys.readouterr().out
    out = pd.read_csv(tmp_path / "evar" / "metadata" / "vc1_gender_nationality.csv", keep_default_na=False)
    assert len(out) == 30 and out["file_name"].is_unique
    # only speakers with both labels; class = <gender>_<nationality>, spaces -> '_'
    assert set(out["speaker"]) <= {"id001", "id002", "id003", "id004"}
    expected = {"id001": "m_USA", "id002": "f_USA", "id003": "m_New_Zealand", "id004": "f_India"}
    assert (out["label"] == out["speaker"].map(expected)).all()
    # every row is a real vc1 clip of that speaker, keeping its EVAR split unless moved to train
    vc1 = pd.read_csv(src).set_index("file_name")
    assert (vc1.loc[out["file_name"], "label"].to_numpy() == out["speaker"].to_numpy()).all()
    assert (vc1.loc[out["file_name"], "split"].to_numpy() == out["source_split"].to_numpy()).all()
    moved = out[out["split"] != out["source_split"]]
    assert (moved["split"] == "train").all()
    # every class has a train clip, so EVARDataModule accepts the CSV (audio of the vc1 folder)
    touch_audio(tmp_path, "vc1", out["file_name"])
    dm = EVARDataModule(evar_root=str(tmp_path), task="vc1_gender_nationality", predict_unsplit=True)
    dm.setup()
    assert dm.classes == sorted(out["label"].unique())
    assert dm.audio_dir == tmp_path / "work" / "16k" / "vc1"
    assert sum(len(d) for d in dm.predict_datasets()) == 30
    dm.check_files()


def test_builders_are_deterministic_and_seeded(tmp_path):
    src, meta = _vc1_root(tmp_path / "a")
    table = pd.read_csv(src)
    _, m = study_tasks.build_study_task("vc1_gender_nationality", tmp_path / "a", vox1_meta=meta, size=25)
    # the same rows in another order, in another root: byte-identical CSV
    write_metadata(tmp_path / "b", "vc1", table.sample(frac=1.0, random_state=3).to_dict("records"))
    p_b, _ = study_tasks.build_study_task("vc1_gender_nationality", tmp_path / "b", vox1_meta=meta, size=25)
    p_a = tmp_path / "a" / "evar" / "metadata" / "vc1_gender_nationality.csv"
    assert p_a.read_bytes() == p_b.read_bytes()
    # another seed draws other clips
    _, other = study_tasks.build_study_task(
        "vc1_gender_nationality", tmp_path / "b", vox1_meta=meta, size=25, seed=1, overwrite=True
    )
    assert set(other["file_name"]) != set(m["file_name"])


def test_existing_csv_is_refused_without_overwrite(tmp_path, capsys):
    _, meta = _vc1_root(tmp_path)
    args = ["build", "vc1_gender_nationality", "--vox1-meta", str(meta), "--evar-root", str(tmp_path), "--size", "5"]
    assert tasks(*args) == 0
    assert tasks(*args) == 2
    assert "vc1_gender_nationality.csv already exists" in capsys.readouterr().err
    assert tasks(*args, "--overwrite") == 0


def test_too_few_eligible_clips_is_a_clear_error(tmp_path, capsys):
    _, meta = _vc1_root(tmp_path, clips_per_speaker=3)  # 4 eligible speakers x 3 clips
    assert (
        tasks("build", "vc1_gender_nationality", "--vox1-meta", str(meta), "--evar-root", str(tmp_path), "--size", "13")
        == 2
    )
    err = capsys.readouterr().err
    assert "vc1.csv" in err and "vox1_meta.csv" in err and "13 clips requested but only 12" in err


@pytest.mark.parametrize("drop, where", [("Nationality", "vox1_meta.csv"), ("split", "vc1.csv")])
def test_missing_column_names_file_and_column(tmp_path, drop, where, capsys):
    src, meta = _vc1_root(tmp_path)
    if drop == "split":
        pd.read_csv(src).drop(columns="split").assign(fold=1).to_csv(src, index=False)
    else:
        m = pd.read_csv(meta, sep="\t")
        m.drop(columns=drop).to_csv(meta, sep="\t", index=False)
    assert tasks("build", "vc1_gender_nationality", "--vox1-meta", str(meta), "--evar-root", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert where in err and f"['{drop}']" in err


def test_vc1_without_vox1_meta_says_what_is_needed(tmp_path, capsys):
    _vc1_root(tmp_path)
    assert tasks("build", "vc1_gender_nationality", "--evar-root", str(tmp_path)) == 2
    assert "--vox1-meta" in capsys.readouterr().err


def _voxforge(root: Path, counts: dict[str, int]) -> Path:
    rows = [
        {"file_name": f"{lang}/spk{k % 3}/{k:04d}.wav", "label": lang, "split": ["train", "valid", "test"][k % 3]}
        for lang, n in counts.items()
        for k in range(n)
    ]
    return write_metadata(root, "voxforge", rows)


def test_voxforge_balanced_per_language(tmp_path):
    _voxforge(tmp_path, {"de": 8, "en": 20, "fr": 11})
    path, out = study_tasks.build_study_task("voxforge_balanced", tmp_path, size=7)
    assert path.name == "voxforge_balanced.csv"
    assert out["label"].value_counts().to_dict() == {"de": 7, "en": 7, "fr": 7}
    src = pd.read_csv(tmp_path / "evar" / "metadata" / "voxforge.csv").set_index("file_name")
    assert (src.loc[out["file_name"], "label"].to_numpy() == out["label"].to_numpy()).all()
    assert (out["split"] == out["source_split"]).all()  # every language has train clips: nothing moved


def test_voxforge_language_with_too_few_clips(tmp_path):
    _voxforge(tmp_path, {"de": 8, "en": 20})
    with pytest.raises(
        study_tasks.StudyTaskError,
        match=r"voxforge\.csv: 9 clips requested but only 8 clips of "
        r"class 'de'",
    ):
        study_tasks.build_study_task("voxforge_balanced", tmp_path, size=9)


def _nsynth(root: Path) -> pd.DataFrame:
    families = ["bass", "keyboard", "synth_lead"]
    rows = []
    for i, pitch in enumerate(range(9, 121)):  # NSynth's full range: MIDI 9..120 (11 octave labels)
        fam = families[i % 3]
        split = "test" if i % 10 == 0 else "valid" if i % 10 == 1 else "train"
        rows.append(
            {
                "file_name": f"nsynth-{split}/audio/{fam}_acoustic_00{i % 4}-{pitch:03d}-{25 * (1 + i % 4):03d}.wav",
                "label": fam,
                "split": split,
            }
        )
    df = pd.DataFrame(rows)
    p = root / "evar" / "metadata" / "nsynth.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p)  # EVAR writes nsynth.csv with its index: a leading unnamed column
    return df


def test_nsynth_subsets_share_clips_and_keep_the_piano_range(tmp_path):
    src = _nsynth(tmp_path)
    _, pitch = study_tasks.build_study_task("nspitch_subset", tmp_path, size=60)
    _, family = study_tasks.build_study_task("nsynth_subset", tmp_path, size=60)
    assert list(pitch["file_name"]) == list(family["file_name"])  # the same draw, two labellings
    midi = pitch["label"].astype(int)
    assert midi.between(21, 108).all() and len(pitch) == 60
    assert (midi == pitch["file_name"].map(study_tasks.nsynth_pitch)).all()
    by_name = src.set_index("file_name")["label"]
    assert (family["label"].to_numpy() == by_name[family["file_name"]].to_numpy()).all()
    assert (pitch["family"] == family["label"]).all()
    # the full eligible set: 88 pitches -> 9 octave classes through label_map midi_to_octave
    _, full = study_tasks.build_study_task("nspitch_subset", tmp_path, size=88, overwrite=True)
    touch_audio(tmp_path, "nsynth", full["file_name"])
    dm = EVARDataModule(evar_root=str(tmp_path), task="nspitch_subset", label_map="midi_to_octave")
    dm.setup()
    assert dm.classes == [f"octave_{o}" for o in range(9)]
    with pytest.raises(study_tasks.StudyTaskError, match="88 clips with MIDI pitch 21-108"):
        study_tasks.build_study_task("nspitch_subset", tmp_path, size=89, overwrite=True)


def test_nsynth_file_name_that_is_not_a_note_name(tmp_path):
    src = _nsynth(tmp_path)
    src.loc[5, "file_name"] = "nsynth-train/audio/oops.wav"
    src.to_csv(tmp_path / "evar" / "metadata" / "nsynth.csv")
    with pytest.raises(study_tasks.StudyTaskError, match=r"nsynth\.csv: row 5: file_name 'nsynth-train/audio/oops"):
        study_tasks.build_study_task("nsynth_subset", tmp_path, size=10)


def test_class_without_a_train_clip_gets_one():
    df = pd.DataFrame(
        {
            "file_name": [f"{i}.wav" for i in range(6)],
            "label": list("aabbcc"),
            "split": ["test", "valid", "train", "test", "test", "test"],
        }
    )
    out = study_tasks.cover_train(df)
    assert out["split"].tolist() == ["train", "valid", "train", "test", "train", "test"]
    assert out["source_split"].tolist() == df["split"].tolist()


def test_module_doctests():
    assert doctest.testmod(study_tasks).failed == 0


def test_nsynth_subsets_have_the_same_splits_covering_octaves_and_families():
    names = [
        f"nsynth-test/audio/{fam}_synthetic_000-{p:03d}-100.wav"
        for fam, p in [("bass", 30), ("bass", 31), ("organ", 45), ("organ", 30), ("bass", 46)]
    ]
    df = pd.DataFrame(
        {
            "file_name": names,
            "label": [n.split("/")[-1].split("_")[0] for n in names],
            "split": ["test"] * 4 + ["train"],
        }
    )
    a = study_tasks.nsynth_subset(df, size=5, label="pitch")
    b = study_tasks.nsynth_subset(df, size=5, label="family")
    assert list(a["split"]) == list(b["split"])
    train = a[a["split"] == "train"]
    octaves = {int(p) // 12 - 1 for p in train["label"]}
    assert octaves == {1, 2} and set(train["family"]) == {"bass", "organ"}
