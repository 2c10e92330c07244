"""Test helper: a pipeline run folder of the pretrained CREPE tiny on the tiny synthetic task with the
oracle's ``top_clips.pt`` (tests/_top_clips.py), ready for the gallery stage."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from _top_clips import brute_force_top_clips, write_top_clips
from analysis.app.config import load_config
from analysis.app.pipeline import Pipeline
from analysis.app.specs import instantiate, run_sources
from analysis.runs.integrity import snapshot
from analysis.runs.layout import TOP_CLIPS
from analysis.runs.read import read_run
from datamodules import EVARDataModule

TASK, MODEL, K = "synth_octave_sine", "crepe_tiny", 4


def pipeline_config(root: Path, out: Path, **over) -> dict:
    cfg = {
        "out": str(out),
        "seed": 0,
        "data": {"evar_root": str(root), "batch_size": 8},
        "tasks": {TASK: {"top_rate": 0.1}},
        "models": {
            MODEL: {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "hop_ms": 100.0, "embedding_layer": 6},
            }
        },
        "report": {"within_task": [TASK]},
        "stability": {"enabled": False},
        "probe": {"seeds": [42], "max_epochs": 3, "patience": 2, "lr": 1e-2},
        "ablation": {"random_draws": 2, "k_grid": [1], "random_for_topk": False},
        "gallery": {"enabled": True, "per_class": 2, "clips": K},
    }
    cfg.update(over)
    return cfg


def make_run(root: Path, tmp: Path, stages=("stats", "identify"), **over) -> tuple[Pipeline, Path]:
    """Statistics + selection of the pipeline, then the oracle's top_clips.pt in the run folder."""
    path = tmp / "pipe.yaml"
    path.write_text(yaml.safe_dump(pipeline_config(root, tmp / "out", **over)), encoding="utf-8")
    pipe = Pipeline(load_config(path))
    pipe.run(list(stages))
    run_dir = pipe.run_dir(TASK, MODEL)
    man = read_run(run_dir).manifest
    enc, data = run_sources(man, run_dir)
    dm = EVARDataModule(**data)
    dm.setup()
    write_top_clips(run_dir, brute_force_top_clips(instantiate(enc, "test"), dm, k=K))
    accept_edit(pipe, f"stats-{TASK}_{MODEL}", run_dir / TOP_CLIPS)
    return pipe, run_dir


def accept_edit(pipe: Pipeline, stage: str, path: Path) -> None:
    """Record ``path``, replaced by the test after ``stage`` finished, as the stage's own output (else the
    next run would find it edited and rebuild the stage: :mod:`analysis.runs.integrity`)."""
    marker = pipe.tree.stage_marker(stage)
    m = json.loads(marker.read_text(encoding="utf-8"))
    m["files"].update(snapshot([path], {}, pipe.tree.root))
    marker.write_text(json.dumps(m, indent=2), encoding="utf-8")
