"""Test helper: a small but complete pipeline output (two synthetic tasks × the pretrained and the untrained
CREPE tiny; every stage: statistics, selection, stability, report, comparison, probe, ablation, gallery,
summary) for the notebook API and the example notebooks (what ``make demo`` writes, in miniature)."""

from __future__ import annotations

from pathlib import Path

import yaml

from analysis.app.cli import main as cli_main

TASKS = ("synth_octave_sine", "synth_octave_saw")
MODELS = ("crepe_tiny", "crepe_tiny_untrained")
CREPE = "lightning_modules.encoders.CrepeEncoder"


def notebook_config(root: Path, out: Path) -> dict:
    args = {"capacity": "tiny", "hop_ms": 100.0, "embedding_layer": 6}
    return {
        "out": str(out),
        "seed": 0,
        "data": {"evar_root": str(root), "batch_size": 10},
        "tasks": {t: {"top_rate": 0.1} for t in TASKS},
        "models": {
            "crepe_tiny": {"class_path": CREPE, "init_args": args},
            "crepe_tiny_untrained": {
                "class_path": CREPE,
                "init_args": {**args, "pretrained": False, "name": "crepe_tiny_untrained"},
            },
        },
        "stats": {"identify_splits": ["train", "valid"], "top_k": 3},
        "report": {"within_task": list(TASKS), "cross_task": [list(TASKS)]},
        "stability": {"replicates": 3},
        "probe": {"seeds": [42], "max_epochs": 3, "patience": 2, "lr": 1e-2},
        "ablation": {"random_draws": 3, "k_grid": [1], "random_for_topk": False},
        "gallery": {"enabled": True, "per_class": 1, "clips": 2},
    }


def make_notebook_run(root: Path, tmp: Path) -> Path:
    """Run the pipeline of :func:`notebook_config` on the EVAR root ``root`` into ``tmp/out``; returns it."""
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(notebook_config(root, tmp / "out"), sort_keys=False), encoding="utf-8")
    assert cli_main(["pipeline", "--config", str(path)]) == 0
    return tmp / "out"
