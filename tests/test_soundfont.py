"""SoundFont task builder: determinism, isolation of clips, stereo → mono, labels against their
definitions, errors naming the file, the CLI verb and the pipeline's data.soundfont section."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tinysoundfont
import yaml

from _sf2 import write_sf2
from analysis.app.cli import main
from analysis.app.config import PipelineError, load_config
from datamodules import EVARDataModule
from datamodules.gm_families import GM_FAMILIES, NOTE_RANGES
from datamodules.soundfont import SoundFont, SoundFontError, default_soundfont, write_soundfont_task

FAMS = ["keyboard", "flute"]
SR = 16000


@pytest.fixture(scope="module")
def tiny_sf2(tmp_path_factory) -> Path:
    return write_sf2(tmp_path_factory.mktemp("sf2") / "tiny.sf2", {0: "saw", 4: "square", 73: "sine"})


def _write(root: Path, sf2: Path, task: str = "t_octave", seed: int = 0, **kw) -> Path:
    args = dict(clips_per_class=3, duration=0.25, families=FAMS, octaves=[4, 5])
    return write_soundfont_task(root, task, seed, sf2=str(sf2), **{**args, **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_other_seed_differs(tmp_path, tiny_sf2):
    for name in ("a", "b"):
        _write(tmp_path / name, tiny_sf2, "t_family")
        _write(tmp_path / name, tiny_sf2, "t_octave")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 * 2 + 2 * 3 + 2 * 3 and a == b
    _write(tmp_path / "c", tiny_sf2, "t_octave", seed=1)
    c = _files(tmp_path / "c")
    assert set(c) <= set(a) and any(c[k] != a[k] for k in c if k.endswith(".wav"))


def _decode(path: Path) -> np.ndarray:
    x, sr = sf.read(path, dtype="int16")
    assert sr == SR and x.ndim == 1
    return x


def _pcm16(x: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, SR, subtype="PCM_16", format="WAV")
    buf.seek(0)
    return sf.read(buf, dtype="int16")[0]


def test_every_clip_equals_its_note_rendered_alone(tmp_path, tiny_sf2):
    """No clip carries anything of the clip before it: each file equals its note rendered by a freshly
    loaded SoundFont (the public tinysoundfont.Synth, stereo, mixed to mono here: the independent path)."""
    csv = _write(tmp_path, tiny_sf2, "t_pitch_class", clips_per_class=3, duration=0.3, hold=0.5)
    df = pd.read_csv(csv)
    n = int(0.3 * SR)
    for row in df.itertuples():
        synth = tinysoundfont.Synth(samplerate=SR)
        synth.program_select(0, synth.sfload(str(tiny_sf2)), 0, int(row.program))
        synth.noteon(0, int(row.midi), int(row.velocity))
        head = np.frombuffer(synth.generate(n // 2), dtype=np.float32)
        synth.noteoff(0, int(row.midi))
        tail = np.frombuffer(synth.generate(n - n // 2), dtype=np.float32)
        stereo = np.concatenate([head, tail]).reshape(n, 2)
        expected = _pcm16(stereo.mean(axis=1))
        got = _decode(tmp_path / "work" / "16k" / "t_pitch_class" / row.file_name)
        assert np.array_equal(got, expected), row.file_name


def test_reset_between_notes_stops_a_sounding_note(tiny_sf2):
    font = SoundFont(tiny_sf2)
    alone = font.render(font.preset(73), 72, 100, 4000, 2000)
    font.render(font.preset(0), 40, 127, 4000, 4000)  # held to the very end: still sounding without a reset
    after = font.render(font.preset(73), 72, 100, 4000, 2000)
    assert np.array_equal(alone, after)
    assert np.abs(alone[:2000]).max() > 0.05  # the note sounds


def test_labels_follow_their_definitions(tmp_path, tiny_sf2):
    for task in ("t_family", "t_octave", "t_pitch_class"):
        df = pd.read_csv(_write(tmp_path, tiny_sf2, task, clips_per_class=4))
        assert (df["octave"] == [f"octave_{m // 12 - 1}" for m in df["midi"]]).all()
        assert (
            df["pitch_class"]
            == [["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][m % 12] for m in df["midi"]]
        ).all()
        for r in df.itertuples():
            assert r.program in GM_FAMILIES[r.family] and r.family in FAMS
            lo, hi = NOTE_RANGES[r.family]
            assert lo <= r.midi <= hi
        label_col = {"t_family": "family", "t_octave": "octave", "t_pitch_class": "pitch_class"}[task]
        assert (df["label"] == df[label_col]).all()
        counts = df.groupby("label")["split"].value_counts().unstack()
        assert (counts[["train", "valid", "test"]] >= 1).all().all()
    assert sorted(pd.read_csv(tmp_path / "evar/metadata/t_octave.csv")["label"].unique()) == ["octave_4", "octave_5"]


def test_datamodule_reads_the_task(tmp_path, tiny_sf2):
    _write(tmp_path, tiny_sf2, "t_family", clips_per_class=5, splits=[3, 1, 1])
    dm = EVARDataModule(evar_root=str(tmp_path), task="t_family", batch_size=4)
    dm.setup()
    assert dm.classes == sorted(FAMS)
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (4, int(0.25 * SR))
    assert (batch["audio"].abs().amax(1) > 0.01).all()  # every clip sounds


def test_default_soundfont_is_pretty_midis(tmp_path):
    path = default_soundfont()
    assert path.name == "TimGM6mb.sf2" and path.parent.name == "pretty_midi"
    df = pd.read_csv(write_soundfont_task(tmp_path, "gm_family", 0, clips_per_class=3, duration=0.2))
    assert sorted(df["label"].unique()) == sorted(GM_FAMILIES)
    assert (df["peak_db"] > -60).all()


def test_bad_soundfonts_are_named(tmp_path, tiny_sf2):
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        SoundFont(tmp_path / "nope.sf2")
    text = tmp_path / "text.sf2"
    text.write_text("not a soundfont")
    with pytest.raises(SoundFontError, match=r"text\.sf2.*not a SoundFont 2 file"):
        SoundFont(text)
    cut = tmp_path / "cut.sf2"
    cut.write_bytes(tiny_sf2.read_bytes()[:300])
    with pytest.raises(SoundFontError, match=r"cut\.sf2.*cannot be read"):
        SoundFont(cut)
    with pytest.raises(SoundFontError, match=r"tiny\.sf2.*'bass'.*GM programs 32-39"):
        _write(tmp_path, tiny_sf2, "t_family", families=["keyboard", "bass"])
    with pytest.raises(ValueError, match="must end with one of"):
        _write(tmp_path, tiny_sf2, "t_timbre")


def test_cli_verb(tmp_path, tiny_sf2, capsys):
    code = main(
        [
            "soundfont",
            "--out",
            str(tmp_path),
            "--kind",
            "octave",
            "pitch_class",
            "--prefix",
            "mine",
            "--sf2",
            str(tiny_sf2),
            "--seed",
            "3",
            "--clips-per-class",
            "3",
            "--duration",
            "0.2",
            "--families",
            *FAMS,
            "--note-range",
            "flute",
            "72",
            "84",
            "--octaves",
            "4",
            "5",
        ]
    )
    assert code == 0
    df = pd.read_csv(tmp_path / "evar/metadata/mine_octave.csv")
    assert df[df["family"] == "flute"]["midi"].between(72, 84).all()
    assert (tmp_path / "evar/metadata/mine_pitch_class.yaml").is_file()
    assert (
        main(
            [
                "soundfont",
                "--out",
                str(tmp_path),
                "--kind",
                "octave",
                "--prefix",
                "mine",
                "--sf2",
                str(tiny_sf2),
                "--seed",
                "3",
            ]
        )
        == 2
    )  # exists: refused
    assert "exists" in capsys.readouterr().err


def _cfg(tmp_path: Path, data: dict) -> Path:
    cfg = {
        "out": str(tmp_path / "out"),
        "data": data,
        "tasks": {"gm_family": {}},
        "models": {"m": {"class_path": "lightning_modules.encoders.CrepeEncoder"}},
    }
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_pipeline_section_is_checked(tmp_path, tiny_sf2):
    cfg = load_config(_cfg(tmp_path, {"soundfont": {"sf2": str(tiny_sf2), "clips_per_class": 4}}))
    assert cfg["data"]["soundfont"]["clips_per_class"] == 4 and cfg["data"]["soundfont"]["hold"] == 0.75
    with pytest.raises(PipelineError, match=r"clip_per_class.*data\.soundfont"):
        load_config(_cfg(tmp_path, {"soundfont": {"clip_per_class": 4}}))
    with pytest.raises(PipelineError, match=r"data\.soundfont\.sf2: SoundFont not found: .*missing\.sf2"):
        load_config(_cfg(tmp_path, {"soundfont": {"sf2": str(tmp_path / "missing.sf2")}}))
    with pytest.raises(PipelineError, match="not both"):
        load_config(_cfg(tmp_path, {"soundfont": {}, "synthetic": {}}))
    with pytest.raises(PipelineError, match=r"data\.soundfont.*velocity"):
        load_config(_cfg(tmp_path, {"soundfont": {"velocity": [100, 20]}}))


def test_data_stage_depends_on_the_soundfont_file(tmp_path, tiny_sf2):
    """Another .sf2 under the same path changes what the data stage depends on (so it re-renders)."""
    import hashlib

    from analysis.app.task_data import data_tasks

    small = {"families": FAMS, "clips_per_class": 3, "duration": 0.2}
    cfg = load_config(_cfg(tmp_path, {"soundfont": {"sf2": str(tiny_sf2), **small}}))
    (task,) = data_tasks(cfg, tmp_path / "evar", ["gm_family"])
    assert task.depends["sf2_sha256"] == hashlib.sha256(tiny_sf2.read_bytes()).hexdigest()
    other = write_sf2(tmp_path / "other.sf2", {0: "sine", 73: "square"})
    cfg2 = load_config(_cfg(tmp_path, {"soundfont": {"sf2": str(other), **small}}))
    assert data_tasks(cfg2, tmp_path / "evar", ["gm_family"])[0].depends["sf2_sha256"] != task.depends["sf2_sha256"]
    task.write(False)  # the writer renders the task into the EVAR root
    assert (tmp_path / "evar" / "evar" / "metadata" / "gm_family.csv").is_file()
