"""The study's pipeline configs (``configs/pipeline/paper_m2d.yaml``, ``paper_vit.yaml``) end to end on a
synthetic stand-in with a tiny M2D and tiny limits.

What is replaced, and only this: ``$EVAR`` points at a stand-in root whose tasks are synthetic
(each study task reads a synthetic task through ``evar_task``; surge/nspitch read a MIDI-labelled copy so
that ``label_map: midi_to_octave`` is exercised; GISE-51's user CSV is a synthetic CSV); the checkpoint
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

from analysis.app.config import load_config
from analysis.app.pipeline import Pipeline
from conftest import REPO_ROOT, STUDY_ABLATIONS

PIPE = REPO_ROOT / "configs" / "pipeline"
STUDY_TASKS = ["esc50", "gise51", "gtzan", "cremad", "cremad_gender", "vc1", "voxforge", "surge", "nspitch"]


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
    return root


def _tiny_checkpoint(folder: Path) -> Path:
    from lightning_modules.encoders import M2DEncoder

    enc = M2DEncoder(width=16, depth=12, num_heads=2, mlp_ratio=192.0, input_frames=32, n_mels=80, patch=16,
                     sample_rate=16000, seed=0)
    d = folder / "m2d_vit_standin-80x32p16x16p16k-261125-test"
    d.mkdir(parents=True)
    sd = {k: v for k, v in enc.state_dict().items()}
    path = d / "checkpoint-0.pth"
    torch.save(sd, path)
    return path


def _stand_in_config(cfg: dict, classes: list[str]) -> dict:
    alias = {"ANG": classes[0], "HAP": classes[1], "jazz": classes[2], "classical": classes[3]}
    for t, opts in cfg["tasks"].items():
        if t in ("surge", "nspitch"):
            opts["evar_task"] = "synth_midi"
            assert opts["label_map"] == "midi_to_octave"
        elif t == "gise51":
            # the user's CSV at the config's path; audio folder and clip length of the stand-in
            opts["task_def"].update(folder="synth_octave_sine", unit_sec=0.5)
        else:
            opts["evar_task"] = "synth_octave_sine" if STUDY_TASKS.index(t) % 2 == 0 else "synth_octave_saw"
            opts.pop("fold", None)
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
@pytest.mark.parametrize("name, var, suffix", [("paper_m2d", "M2D_CHECKPOINT", "analysis"),
                                               ("paper_vit", "VIT_CHECKPOINT", "vit")])
def test_paper_pipeline_on_stand_in(name, var, suffix, synthetic_root, tmp_path, monkeypatch):
    root = _stand_in_root(synthetic_root, tmp_path / "evar")
    monkeypatch.setenv("EVAR", str(root))
    monkeypatch.setenv(var, str(_tiny_checkpoint(tmp_path / "ckpt")))
    cfg = load_config(PIPE / f"{name}.yaml", out=str(tmp_path / "out"))
    # the config as shipped: every study task, the six figures, the published lists (M2D)
    assert list(cfg["tasks"]) == STUDY_TASKS
    assert cfg["report"]["cross_task"] == [["surge", "nspitch"], ["esc50", "gise51"], ["vc1", "cremad_gender"]]
    assert cfg["report"]["within_task"] == ["gtzan", "cremad", "voxforge"]
    assert cfg["tasks"]["esc50"]["top_rate"] == 0.02 and cfg["tasks"]["gise51"]["top_rate"] == 0.02
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
    for f in ("cross_task-surge-nspitch.pdf", "cross_task-esc50-gise51.pdf", "cross_task-vc1-cremad_gender.pdf",
              "within_task-gtzan.pdf", "within_task-cremad.pdf", "within_task-voxforge.pdf",
              f"task_level_neuron_statistics_{suffix}.csv"):
        assert (rep / f).is_file(), f
    stats = pd.read_csv(rep / f"task_level_neuron_statistics_{suffix}.csv")
    assert sorted(stats["task"]) == sorted(STUDY_TASKS)
    # surge/nspitch were analysed by octave through label_map
    assert (out / "runs" / f"surge_{suffix}" / "classes.txt").read_text().split() == classes
    abl = pd.read_csv(out / "ablation" / f"cremad_{suffix}" / "ablation.csv", keep_default_na=False)
    kinds = set(abl["kind"])
    assert {"baseline", "shared", "index_plus_one"} <= kinds
    if name == "paper_m2d":
        assert "explicit" in kinds
        assert (abl[abl["condition"] == "cremad_ang_hap"]["target"] == "+".join([classes[0], classes[1]])).all()
    assert (out / "report" / "summary.md").is_file()
