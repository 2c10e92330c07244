"""Test helper shared by the tests/test_bad_inputs_*.py files: a small complete run folder, a probe
checkpoint, and the pipeline config (CREPE tiny on one synthetic task) the config and fault cases mutate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import yaml

from analysis.aape import identify
from analysis.app.cli import main as cli_main
from analysis.runs import layout
from analysis.runs.read import read_run
from lightning_modules.linear_probe import LinearProbe

from _fake_run import planted_counts, write_fake_run

TASK = "synth_octave_sine"
MODEL = "crepe_tiny"
KEY = f"{TASK}_{MODEL}"


def fake_run(root: Path) -> Path:
    """A complete small run folder (statistics, embeddings, selection)."""
    count, n, _ = planted_counts(2, 16, 3, 100, per_class=2)
    d = write_fake_run(root, "toy", "m", count, n, classes=["a", "b", "c"])
    torch.save(torch.randn(12, 8), d / layout.FEATURES)
    torch.save(torch.tensor([0, 1, 2] * 4), d / layout.GTS)
    pd.DataFrame(
        {
            "row": range(12),
            "index": range(12),
            "file_name": [f"f{i}.wav" for i in range(12)],
            "label": ["a", "b", "c"] * 4,
            "split": ["train"] * 6 + ["valid"] * 3 + ["test"] * 3,
        }
    ).to_csv(d / layout.INDEX, index=False)
    torch.save(identify(read_run(d).over_zero, top_rate=0.2).neurons, d / layout.NEURONS_PT)
    sites = torch.zeros(2, 16, 4)
    torch.save(
        {"score": sites, "index": sites.long(), "frame": sites.long(), "band": sites.long(), "sites": ["s0", "s1"]},
        d / layout.TOP_CLIPS,
    )
    return d


def probe_checkpoint(path: Path, **extra) -> Path:
    p = LinearProbe(num_classes=3, embed_dim=8, classes=["a", "b", "c"], multilabel=False)
    ck = {
        "state_dict": p.state_dict(),
        "hyper_parameters": dict(p.hparams),
        "epoch": 1,
        "pytorch-lightning_version": "2.6.6",
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, path)
    return path


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
        "stats": {"identify_splits": ["train", "valid"]},
        "report": {"within_task": [TASK]},
        "stability": {"enabled": False},
        "probe": {"seeds": [42], "max_epochs": 2, "patience": 1, "lr": 1e-2},
        "ablation": {"random_draws": 1, "k_grid": [], "random_for_topk": False},
    }
    cfg.update(over)
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_pipeline(path: Path, *args: str) -> int:
    return cli_main(["pipeline", "--config", str(path), *args])
