"""Test helper: the small pipeline config of the pipeline tests (one synthetic octave task, CREPE tiny at a
100 ms hop, few probe epochs and random draws), and writing a config dict as YAML."""

from __future__ import annotations

from pathlib import Path

import yaml


def pipeline_config(root: Path, out: Path, **over) -> dict:
    """The config dict: ``root`` the EVAR root, ``out`` the output folder, ``over`` top-level sections replaced."""
    cfg = {
        "out": str(out),
        "seed": 0,
        "data": {"evar_root": str(root), "batch_size": 8},
        "tasks": {"synth_octave_sine": {"top_rate": 0.1}},
        "models": {
            "crepe_tiny": {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "hop_ms": 100.0, "embedding_layer": 6},
            }
        },
        "stats": {"identify_splits": ["train", "valid"]},
        "report": {"within_task": ["synth_octave_sine"]},
        "stability": {"replicates": 3},
        "probe": {"seeds": [42, 43], "max_epochs": 4, "patience": 2, "lr": 1e-2, "min_steps": 8},
        "ablation": {"random_draws": 3, "k_grid": [1], "random_for_topk": False},
    }
    for k, v in over.items():
        cfg[k] = v
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path
