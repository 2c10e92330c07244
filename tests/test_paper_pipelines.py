"""The study's pipeline configs (``configs/pipeline/paper_m2d.yaml``, ``paper_vit.yaml``) end to end on a
synthetic stand-in with a tiny M2D and tiny limits.

What is replaced, and only this: ``$EVAR`` points at a stand-in root whose tasks are synthetic
(each EVAR task of the study reads a synthetic task through ``evar_task``; surge reads a MIDI-labelled copy so
that ``label_map: midi_to_octave`` is exercised; GISE-51's user CSV is a synthetic CSV). The study's subsets
(vc1_gender_nationality, voxforge_balanced, nspitch_subset, nsynth_subset) are read as the configs name
them: the stand-in root holds fake EVAR metadata of vc1, voxforge and nsynth (plus a fake vox1_meta.csv)
over the synthetic audio, and the subsets are built from it with ``python -m analysis tasks build``, at
the stand-in's size and with its clip length; one voxforge clip has no split, so ``identify_splits: all``
is seen counting it. The checkpoint
variable points at a random-init M2D saved in the official encoder-only format, with the study's geometry
where the published neuron lists need it (12 blocks × 3072 MLP neurons, width 16, so ``num_heads`` is
given); the study's class names are aliased onto synthetic classes; seeds/epochs/draws are cut.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from analysis.app.cli import main as cli_main
from analysis.app.config import load_config
from analysis.app.pipeline import Pipeline
from conftest import REPO_ROOT, STUDY_ABLATIONS

PIPE = REPO_ROOT / "configs" / "pipeline"
STUDY_TASKS = ["esc50", "gise51", "gtzan", "cremad", "cremad_gender", "vc1", "voxforge", "surge", "nspitch", "nsynth"]
#: pipeline task -> the study subset it reads (built by `python -m analysis tasks build`)
SUBSETS = {
    "vc1": "vc1_gender_nationality",
    "voxforge": "voxforge_balanced",
    "nspitch": "nspitch_subset",
    "nsynth": "nsynth_subset",
}


def _stand_in_root(synthetic_root: Path, root: Path) -> Path:
    """A root with links to the synthetic audio, plus a MIDI-labelled copy of the saw task."""
    (root / "evar" / "metadata").mkdir(parents=True)
    (root / "work" / "16k").mkdir(parents=True)
    for t in ("synth_octave_sine", "synth_octave_saw"):
        os.symlink(synthetic_root / "work" / "16k" / t, root / "work" / "16k" / t)
        for ext in ("csv", "yaml"):
            os.symlink(synthetic_root / "evar" / "metadata" / f"{t}.{ext}", root / "evar" / "metadata" / f"{t}.{ext}")
    df = pd.read_csv(synthetic_root / "evar" / "metadata" / "synth_octave_saw.csv")
    df["label"] = df["midi"].round().astype(int)
    df.to_csv(root / "evar" / "metadata" / "synth_midi.csv", index=False)
    spec = yaml.safe_load((synthetic_root / "evar" / "metadata" / "synth_octave_saw.yaml").read_text())
    spec["name"] = "synth_midi"
    (root / "evar" / "metadata" / "synth_midi.yaml").write_text(yaml.safe_dump(spec))
    # GISE-51: "the user's own CSV" in EVAR form
    gise = pd.read_csv(synthetic_root / "evar" / "metadata" / "synth_octave_sine.csv")
    gise.to_csv(root / "evar" / "metadata" / "gise51.csv", index=False)
    _fake_study_sources(synthetic_root, root)
    for name in SUBSETS.values():
        args = ["tasks", "build", name, "--evar-root", str(root), "--size", str(_SUBSET_SIZE[name])]
        if name == "vc1_gender_nationality":
            args += ["--vox1-meta", str(root / "vox1_meta.csv")]
        assert cli_main(args) == 0
    return root


_SUBSET_SIZE = {"vc1_gender_nationality": 16, "voxforge_balanced": 4, "nspitch_subset": 18, "nsynth_subset": 18}


def _fake_study_sources(synthetic_root: Path, root: Path) -> None:
    """EVAR metadata of vc1, voxforge and nsynth over the synthetic audio (folders vc1 and voxforge link
    to the synthetic tasks' folders; nsynth holds links named like NSynth notes), and a vox1_meta.csv."""
    meta = root / "evar" / "metadata"
    sine = pd.read_csv(synthetic_root / "evar" / "metadata" / "synth_octave_sine.csv")
    saw = pd.read_csv(synthetic_root / "evar" / "metadata" / "synth_octave_saw.csv")
    os.symlink(synthetic_root / "work" / "16k" / "synth_octave_sine", root / "work" / "16k" / "vc1")
    os.symlink(synthetic_root / "work" / "16k" / "synth_octave_saw", root / "work" / "16k" / "voxforge")
    # vc1: one speaker per octave; vox1_meta gives each a gender and nationality (one speaker has none)
    speakers = {lab: f"id1000{i}" for i, lab in enumerate(sorted(sine["label"].unique()))}
    sine.assign(label=sine["label"].map(speakers))[["file_name", "label", "split"]].to_csv(
        meta / "vc1.csv", index=False
    )
    people = [("m", "USA"), ("f", "UK"), ("m", "India"), ("f", "USA"), ("m", "")]
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    lines += [f"{spk}\tx\t{g}\t{n}\tdev" for spk, (g, n) in zip(speakers.values(), people)]
    (root / "vox1_meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # voxforge: one language per octave; one clip has no split
    vox = saw.assign(label=saw["label"].str.replace("octave_", "lang", regex=False))[["file_name", "label", "split"]]
    vox.loc[vox.index[vox["split"] == "test"][0], "split"] = ""
    vox.to_csv(meta / "voxforge.csv", index=False)
    # nsynth: NSynth note names <instrument>-<pitch>-<velocity>, pitch = the tone's MIDI note
    rows = []
    for i, r in saw.iterrows():
        name = f"nsynth-{r['split']}/audio/{['bass', 'organ'][i % 2]}_synthetic_00{i % 3}-{int(r['midi']):03d}-100.wav"
        link = root / "work" / "16k" / "nsynth" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(synthetic_root / "work" / "16k" / "synth_octave_saw" / r["file_name"], link)
        rows.append({"file_name": name, "label": ["bass", "organ"][i % 2], "split": r["split"]})
    pd.DataFrame(rows).to_csv(meta / "nsynth.csv")


def _tiny_checkpoint(folder: Path) -> Path:
    from lightning_modules.encoders import M2DEncoder

    enc = M2DEncoder(
        width=16,
        depth=12,
        num_heads=2,
        mlp_ratio=192.0,
        input_frames=32,
        n_mels=80,
        patch=16,
        sample_rate=16000,
        seed=0,
    )
    d = folder / "m2d_vit_standin-80x32p16x16p16k-261125-test"
    d.mkdir(parents=True)
    sd = {k: v for k, v in enc.state_dict().items()}
    path = d / "checkpoint-0.pth"
    torch.save(sd, path)
    return path


def _stand_in_config(cfg: dict, classes: list[str]) -> dict:
    alias = {"ANG": classes[0], "HAP": classes[1], "jazz": classes[2], "classical": classes[3]}
    for t, opts in cfg["tasks"].items():
        if t in SUBSETS:
            opts["unit_sec"] = 0.5  # the study's subsets as built above; the synthetic clips are 0.5 s
        elif t == "surge":
            opts["evar_task"] = "synth_midi"
            assert opts["label_map"] == "midi_to_octave"
        elif t == "gise51":
            # the user's CSV at the config's path; audio folder and clip length of the stand-in
            opts["task_def"].update(folder="synth_octave_sine", unit_sec=0.5)
        else:
            opts["evar_task"] = "synth_octave_sine" if STUDY_TASKS.index(t) % 2 == 0 else "synth_octave_saw"
            opts["fold"] = 1  # the datamodule default: the stand-in tasks have no folds
        if opts.get("neuron_lists") or opts.get("shared"):
            opts["class_aliases"] = alias
    for m in cfg["models"].values():
        m["init_args"]["num_heads"] = 2  # width 16: heads cannot be inferred
    cfg["data"].update(batch_size=8, num_workers=0)
    cfg["trainer"].update(accelerator="cpu")
    cfg["stability"].update(replicates=2, sweep=False)
    cfg["probe"].update(seeds=[42], max_epochs=3, patience=2, lr=1e-2)
    cfg["ablation"].update(random_draws=1, k_grid=[1])
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, var, suffix", [("paper_m2d", "M2D_CHECKPOINT", "analysis"), ("paper_vit", "VIT_CHECKPOINT", "vit")]
)
def test_paper_pipeline_on_stand_in(name, var, suffix, synthetic_root, tmp_path, monkeypatch):
    root = _stand_in_root(synthetic_root, tmp_path / "evar")
    monkeypatch.setenv("EVAR", str(root))
    monkeypatch.setenv(var, str(_tiny_checkpoint(tmp_path / "ckpt")))
    cfg = load_config(PIPE / f"{name}.yaml", out=str(tmp_path / "out"))
    # the config as shipped: every study task, the six figures, the published lists (M2D)
    assert list(cfg["tasks"]) == STUDY_TASKS
    assert cfg["report"]["cross_task"] == [["surge", "nspitch"], ["esc50", "gise51"], ["vc1", "cremad_gender"]]
    assert cfg["report"]["within_task"] == ["gtzan", "cremad", "voxforge"]
    assert {t: o["top_rate"] for t, o in cfg["tasks"].items()} == {
        t: 0.02 if t in ("esc50", "gise51") else 0.01 for t in STUDY_TASKS
    }
    assert {t: cfg["tasks"][t]["evar_task"] for t in SUBSETS} == SUBSETS
    assert cfg["tasks"]["nspitch"]["label_map"] == cfg["tasks"]["surge"]["label_map"] == "midi_to_octave"
    assert cfg["stats"]["identify_splits"] == "all"
    study = yaml.safe_load(STUDY_ABLATIONS.read_text())
    if name == "paper_m2d":
        assert cfg["tasks"]["cremad"]["neuron_lists"][0]["neurons"] == study["cremad_ang_hap"]["neurons"]
        assert cfg["tasks"]["gtzan"]["neuron_lists"][0]["neurons"] == study["gtzan_classical_jazz"]["neurons"]
    assert cfg["ablation"]["index_plus_one"] is True
    classes = sorted(pd.read_csv(synthetic_root / "evar" / "metadata" / "synth_octave_sine.csv")["label"].unique())
    cfg = _stand_in_config(cfg, classes)
    Pipeline(cfg).run()

    out = tmp_path / "out"
    rep = out / "models" / suffix
    for f in (
        "cross_task-surge-nspitch.pdf",
        "cross_task-esc50-gise51.pdf",
        "cross_task-vc1-cremad_gender.pdf",
        "within_task-gtzan.pdf",
        "within_task-cremad.pdf",
        "within_task-voxforge.pdf",
        f"task_level_neuron_statistics_{suffix}.csv",
    ):
        assert (rep / f).is_file(), f
    stats = pd.read_csv(rep / f"task_level_neuron_statistics_{suffix}.csv")
    assert sorted(stats["task"]) == sorted(STUDY_TASKS)
    # surge/nspitch were analysed by octave through label_map
    assert (out / "runs" / f"surge_{suffix}" / "classes.txt").read_text().split() == classes
    octaves = (out / "runs" / f"nspitch_{suffix}" / "classes.txt").read_text().split()
    assert octaves and all(c.startswith("octave_") for c in octaves)
    assert (out / "runs" / f"nsynth_{suffix}" / "classes.txt").read_text().split() == ["bass", "organ"]
    # vc1 is gender x nationality: the speaker without a nationality is left out
    assert (out / "runs" / f"vc1_{suffix}" / "classes.txt").read_text().split() == ["f_UK", "f_USA", "m_India", "m_USA"]
    # identification on every clip: n_clips sums to the subset's rows, the clip without a split included
    meta = root / "evar" / "metadata"
    for task, subset in SUBSETS.items():
        st = torch.load(out / "runs" / f"{task}_{suffix}" / "stats.pt", weights_only=True)
        assert int(st["n_clips"].sum()) == len(pd.read_csv(meta / f"{subset}.csv")), task
    index = pd.read_csv(out / "runs" / f"voxforge_{suffix}" / "index.csv", keep_default_na=False)
    assert (index["split"] == "none").sum() == 1
    abl = pd.read_csv(out / "ablation" / f"cremad_{suffix}" / "ablation.csv", keep_default_na=False)
    kinds = set(abl["kind"])
    assert {"baseline", "shared", "index_plus_one"} <= kinds
    if name == "paper_m2d":
        assert "explicit" in kinds
        assert (abl[abl["condition"] == "cremad_ang_hap"]["target"] == "+".join([classes[0], classes[1]])).all()
    assert (out / "report" / "summary.md").is_file()
    # the reproduction table: our numbers beside the study's (published for M2D only)
    rep = pd.read_csv(out / "report" / "reproduction.csv")
    if name == "paper_m2d":
        by = rep.set_index(["task", "detail"])
        tasks = pd.read_csv(out / "report" / "tasks.csv").set_index("task")
        assert by.loc[("cremad", "mean over classes"), "study"] == 172.0
        assert by.loc[("cremad", "mean over classes"), "ours"] == pytest.approx(
            tasks.loc["cremad", "neurons_per_class"]
        )
        ang = abl[(abl["condition"] == "cremad_ang_hap") & (abl["class"] == classes[0])]["delta"].item()
        assert by.loc[("cremad", "cremad_ang_hap:ANG"), "ours"] == pytest.approx(100 * ang)
        assert by.loc[("cremad", "cremad_ang_hap:ANG"), "study"] == -1.51
        assert "## Reproduction: our numbers next to the study's" in (out / "report" / "summary.md").read_text()
    else:
        assert rep.empty
