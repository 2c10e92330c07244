"""``python -m analysis identify``: files and documented columns, per-task top_rate, overwrite refusal,
clear errors on bad run folders."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from _fake_run import planted_counts, write_fake_run

from analysis.app.cli import main

REPO = Path(__file__).resolve().parents[1]
FIXED = ["rank", "layer", "site", "neuron", "entropy", "normalised_entropy", "passes_filter"]
TAIL = [
    "classes",
    "n_classes",
    "filter_bar",
    "activation_bar",
    "top_rate",
    "filter_rate",
    "activation_bar_ratio",
    "mode",
]


def _run(tmp_path: Path, task: str = "cremad", **kw) -> tuple[Path, dict]:
    count, n, planted = planted_counts(3, 40, 4, 400, per_class=2, seed=1)
    d = write_fake_run(tmp_path, task, "analysis", count, n, classes=["ang", "hap", "neu", "sad"], **kw)
    return d, planted


def test_identify_writes_documented_files(tmp_path):
    d, planted = _run(tmp_path)
    assert main(["identify", "--run", str(d), "--top-rate", "0.1"]) == 0
    df = pd.read_csv(d / "neurons.csv", keep_default_na=False)
    classes = (d / "classes.txt").read_text().split()
    assert list(df.columns) == FIXED + [f"p_{c}" for c in classes] + TAIL
    assert len(df) == round(3 * 40 * 0.1)
    assert df["rank"].tolist() == list(range(1, len(df) + 1))
    assert (df["entropy"].diff().dropna() >= 0).all()  # rank order = ascending entropy
    assert set(df["mode"]) == {"default"} and set(df["top_rate"]) == {0.1}
    assert df["site"].tolist() == [f"blocks.{l}.mlp.act" for l in df["layer"]]
    # p_<class> columns are the run's probabilities
    oz = torch.load(d / "over_zero.pt")
    for _, r in df.iterrows():
        for c, name in enumerate(classes):
            assert r[f"p_{name}"] == pytest.approx(float(oz[r["layer"], r["neuron"], c]))
    # normalised entropy = entropy / ln C
    assert (df["normalised_entropy"] - df["entropy"] / math.log(4)).abs().max() < 1e-6
    # every planted neuron is found and assigned to exactly its class
    for c, pairs in planted.items():
        for l, i in pairs:
            row = df[(df.layer == l) & (df.neuron == i)]
            assert len(row) == 1 and row["classes"].item() == classes[c]
    # assigned classes agree with p > activation_bar
    for _, r in df.iterrows():
        exp = [c for c in classes if r[f"p_{c}"] > r["activation_bar"]]
        assert r["classes"] == ";".join(exp) and r["n_classes"] == len(exp)
    # neurons.pt: LAPE list format consistent with the csv
    neurons = torch.load(d / "neurons.pt")
    assert isinstance(neurons, list) and len(neurons) == 4
    for c, name in enumerate(classes):
        assert len(neurons[c]) == 3
        got = {(l, int(i)) for l, t in enumerate(neurons[c]) for i in t}
        exp = {(int(r.layer), int(r.neuron)) for r in df.itertuples() if name in r.classes.split(";")}
        assert got == exp
        for t in neurons[c]:
            assert t.dtype == torch.int64 and torch.equal(t, t.sort().values)
    info = json.loads((d / "neurons.json").read_text())
    assert info["n_selected"] == len(df) and info["options"]["drop_empty_classes"] is False


def test_identify_refuses_existing_outputs_without_overwrite(tmp_path, capsys):
    d, _ = _run(tmp_path)
    assert main(["identify", "--run", str(d)]) == 0
    before = (d / "neurons.csv").read_bytes()
    assert main(["identify", "--run", str(d), "--top-rate", "0.2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (d / "neurons.csv").read_bytes() == before
    assert main(["identify", "--run", str(d), "--top-rate", "0.2", "--overwrite"]) == 0
    assert set(pd.read_csv(d / "neurons.csv")["top_rate"]) == {0.2}


@pytest.mark.parametrize("task,rate", [("esc50", 0.02), ("gtzan", 0.01)])
def test_identify_uses_per_task_top_rate(tmp_path, task, rate):
    count, n, _ = planted_counts(2, 500, 3, 200, per_class=3, seed=2)
    d = write_fake_run(tmp_path, task, "vit", count, n)
    assert main(["identify", "--run", str(d)]) == 0
    df = pd.read_csv(d / "neurons.csv")
    assert set(df["top_rate"]) == {rate} and len(df) == round(1000 * rate)


def test_identify_lape_mode_and_module_entry(tmp_path):
    d, _ = _run(tmp_path)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "identify",
            "--run",
            str(d),
            "--mode",
            "lape",
            "--top-rate",
            "0.05",
            "--filter-rate",
            "0.9",
            "--activation-bar-ratio",
            "0.9",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(d / "neurons.csv")
    assert set(df["mode"]) == {"lape"} and set(df["filter_rate"]) == {0.9}


def test_ragged_run_never_lists_absent_neurons(tmp_path):
    count, n, _ = planted_counts(3, 16, 3, 100, per_class=1, seed=3)
    d = write_fake_run(tmp_path, "synth", "crepe_tiny", count, n, site_neurons=[16, 4, 8])
    assert main(["identify", "--run", str(d), "--top-rate", "1.0", "--mode", "lape"]) == 0
    df = pd.read_csv(d / "neurons.csv")
    assert len(df) == 16 + 4 + 8
    assert all(r.neuron < [16, 4, 8][r.layer] for r in df.itertuples())


def test_bad_run_folder_errors_name_the_file(tmp_path, capsys):
    d, _ = _run(tmp_path)
    (d / "classes.txt").write_text("a\nb\n")
    assert main(["identify", "--run", str(d)]) == 2
    err = capsys.readouterr().err
    assert "classes.txt" in err and "2 classes" in err
    assert main(["identify", "--run", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_pipeline_verb_passes_its_arguments(monkeypatch):
    import analysis.app.cli_pipeline as cli_pipeline

    seen: dict = {}
    monkeypatch.setattr(cli_pipeline, "run_pipeline", lambda *a: seen.setdefault("args", a) and 0)
    assert main(["pipeline", "--config", "x.yaml", "--force"]) == 0
    assert seen["args"] == ("x.yaml", None, True, None)
