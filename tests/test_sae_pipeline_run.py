"""The pipeline with an SAE, end to end on a tiny synthetic task: the SAE's metrics.csv and
compare/neurons_vs_features.csv hold the contract's columns, a row per unit kind; the probe accuracies of
the table equal an independent computation (the base encoder with a hook that puts the SAE's reconstruction,
computed by hand from sae.pt, in place of the site's output); the feature gallery plays its top clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from analysis.app.cli import main as cli_main
from analysis.runs.read import best_checkpoint
from datamodules import EVARDataModule
from lightning_modules.audio_classifier import load_probe
from lightning_modules.encoders import CrepeEncoder

TASK = "synth_octave_sine"
SITE = "blocks.5.relu"
INIT = {"capacity": "tiny", "pretrained": True, "hop_ms": 100.0, "embedding_layer": 6}
K = 8


def _config(root: Path, out: Path) -> dict:
    return {
        "out": str(out),
        "seed": 0,
        "data": {"evar_root": str(root), "batch_size": 10},
        "tasks": {TASK: {"top_rate": 0.1}},
        "models": {"crepe_tiny": {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": INIT}},
        "stats": {"identify_splits": ["train", "valid"], "top_k": 3},
        "stability": {"replicates": 3},
        "probe": {"seeds": [42], "max_epochs": 3, "patience": 2, "lr": 1e-2},
        "ablation": {"random_draws": 3, "k_grid": [], "random_for_topk": False},
        "gallery": {"enabled": True, "per_class": 1, "clips": 2},
        "sae": {
            "enabled": True,
            "sites": [SITE],
            "expansion_factor": 2,
            "k": K,
            "max_epochs": 2,
            "steps_per_batch": 2,
        },
    }


def _hand_reconstruction(sae: dict, y: torch.Tensor) -> torch.Tensor:
    """The TopK SAE of ``sae.pt`` applied by hand to a site output ``y [B, C, T, 1]`` (channels on axis 1)."""
    s = float(sae.get("input_scale", 1.0))
    x = y.movedim(1, -1)
    shape = x.shape
    x = x.reshape(-1, shape[-1]) * s
    pre = (x - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]
    vals, idx = pre.topk(K, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, idx, vals.clamp(min=0))
    x_hat = (z @ sae["W_dec"] + sae["b_dec"]) / s
    return x_hat.reshape(shape).movedim(-1, 1)


def _accuracy(encoder, probe, dm, hook=None) -> float:
    handle = encoder.get_submodule(SITE).register_forward_hook(hook) if hook else None
    right = total = 0
    try:
        with torch.no_grad():
            for b in dm.test_dataloader():
                logits = probe(encoder(b["audio"], b.get("length")))
                right += int((logits.argmax(-1) == b["label"]).sum())
                total += len(b["label"])
    finally:
        if handle is not None:
            handle.remove()
    return right / total


@pytest.mark.slow
def test_pipeline_with_an_sae_writes_the_contract_and_its_probe_accuracies(synthetic_root, tmp_path, capsys):
    cfg = tmp_path / "pipeline.yaml"
    out = tmp_path / "out"
    cfg.write_text(yaml.safe_dump(_config(synthetic_root, out), sort_keys=False))
    assert cli_main(["pipeline", "--config", str(cfg)]) == 0

    metrics = pd.read_csv(out / "saes" / "crepe_tiny" / SITE / "metrics.csv")
    assert len(metrics) == 1 and metrics.loc[0, "site"] == SITE and metrics.loc[0, "k"] == K
    assert {"site", "d_sae", "k", "fve", "l0", "dead_fraction"} <= set(metrics.columns)
    assert metrics.loc[0, "d_sae"] == 2 * 64 and 0 <= metrics.loc[0, "dead_fraction"] <= 1

    table = pd.read_csv(out / "compare" / "neurons_vs_features.csv")
    contract = ["task", "model", "site", "unit_kind", "units", "specific_units", "mean_jaccard", "mean_on_target_delta"]
    assert set(contract) <= set(table.columns)
    assert sorted(table["unit_kind"]) == ["feature", "neuron"] and set(table["task"]) == {TASK}
    row = {r.unit_kind: r for r in table.itertuples()}
    assert row["neuron"].units == 64 and row["feature"].units == 128

    # the oracle: the base encoder, its probe, and the SAE applied by hand at the site
    encoder = CrepeEncoder(**INIT).eval()
    probe = load_probe(best_checkpoint(out / "probes" / f"{TASK}_crepe_tiny_sae")).eval()
    dm = EVARDataModule(evar_root=str(synthetic_root), task=TASK, batch_size=10, num_workers=0)
    dm.setup()
    sae = torch.load(out / "saes" / "crepe_tiny" / SITE / "sae.pt", weights_only=True)
    original = _accuracy(encoder, probe, dm)
    spliced = _accuracy(encoder, probe, dm, hook=lambda m, i, o: _hand_reconstruction(sae, o))
    assert row["neuron"].probe_accuracy == pytest.approx(original, abs=1e-9)
    assert row["feature"].probe_accuracy == pytest.approx(spliced, abs=1e-9)
    for r in row.values():
        assert r.probe_accuracy_lo <= r.probe_accuracy <= r.probe_accuracy_hi

    summary = (out / "report" / "summary.md").read_text()
    assert "Neurons vs SAE features" in summary and "probe_accuracy" in summary
    pages = list((out / "gallery" / f"{TASK}_crepe_tiny_sae").rglob("*.html"))
    assert any("<audio" in p.read_text() for p in pages)

    # a moved output folder resumes: the feature model's spec names its SAE inside the folder, and the
    # stage hashes take such paths relative to it (before, every stage of the feature model was refused)
    moved = tmp_path / "moved"
    shutil.move(str(out), str(moved))
    capsys.readouterr()
    assert cli_main(["pipeline", "--config", str(cfg), "--out", str(moved)]) == 0
    assert "(0 stages ran," in capsys.readouterr().out
