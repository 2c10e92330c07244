"""LinearProbe (EVAR protocol), the probe over seeds and AudioClassifier parity with the probe on stored embeddings."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch

from datamodules.features import FeatureDataModule
from lightning_modules.audio_classifier import AudioClassifier
from lightning_modules.linear_probe import LinearProbe
from _ablation_toy import (
    CLASSES,
    ToyAudioDataModule,
    ToyEncoder,
    make_audio,
    toy_trainer,
    train_probe,
    write_run_folder,
)
from _fake_run import write_run


def _trainer(**kw):
    kw.setdefault("enable_checkpointing", False)  # no checkpoints/ folder in the working directory
    return toy_trainer(**kw)


def test_binary_task_two_logits_perfect_probe_scores_100(tmp_path):
    """Male/Female: two logits with softmax CE (not one sigmoid); a separable task reaches 100%."""
    d = write_run(tmp_path / "g", {"train": 20, "valid": 4, "test": 6}, classes=("Female", "Male"))
    dm = FeatureDataModule(str(d), batch_size=8)
    model = LinearProbe(lr=0.05)
    tr = _trainer(max_epochs=15)
    tr.fit(model, datamodule=dm)
    assert model.head.out_features == 2 and model.classes == ["Female", "Male"]
    res = tr.test(model, datamodule=dm, verbose=False)[0]
    assert res["test/acc"] == 1.0 and res["test/score"] == 1.0
    assert res["test/recall/Female"] == 1.0 and res["test/recall/Male"] == 1.0
    assert res["test/macro_recall"] == 1.0


def test_standardiser_travels_in_checkpoint(tmp_path):
    d = write_run(tmp_path / "r", {"train": 6, "valid": 2, "test": 2})
    dm = FeatureDataModule(str(d))
    model = LinearProbe(lr=0.01)
    tr = _trainer(max_epochs=2, default_root_dir=str(tmp_path))
    tr.fit(model, datamodule=dm)
    assert torch.equal(model.mean, dm.mean) and torch.equal(model.std, dm.std)
    ck = tmp_path / "p.ckpt"
    tr.save_checkpoint(ck)
    loaded = LinearProbe.load_from_checkpoint(str(ck))
    assert torch.equal(loaded.mean, dm.mean) and torch.equal(loaded.std, dm.std)
    assert loaded.classes == ["a", "b", "c"] and loaded.hparams.embed_dim == 5
    x = dm.features[:4]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        # forward = Linear applied to the standardised embedding
        assert torch.allclose(loaded(x), loaded.head(dm.transform(x)), atol=1e-6)


def test_multilabel_probe_logs_map(tmp_path):
    d = write_run(tmp_path / "m", {"train": 8, "valid": 2, "test": 3}, multilabel=True)
    dm = FeatureDataModule(str(d), batch_size=8)
    model = LinearProbe(lr=0.05)
    tr = _trainer(max_epochs=3)
    tr.fit(model, datamodule=dm)
    res = tr.test(model, datamodule=dm, verbose=False)[0]
    assert model.multilabel and 0.0 <= res["test/mAP"] <= 1.0 and res["test/score"] == res["test/mAP"]


def test_mismatched_probe_arguments_are_errors(tmp_path):
    d = write_run(tmp_path / "r", {"train": 3, "valid": 1, "test": 1})
    with pytest.raises(ValueError, match="num_classes=4 but the datamodule has 3"):
        _trainer(max_epochs=1).fit(LinearProbe(num_classes=4, embed_dim=5), datamodule=FeatureDataModule(str(d)))


def test_probe_seeds_writes_results_and_checkpoints(tmp_path):
    from analysis.app.cli import main
    from analysis.app.probe import best_checkpoint, fit_seeds
    from analysis.runs.atomic import OutputExistsError

    d = write_run(tmp_path / "r", {"train": 10, "test": 3})  # no valid split: carved per seed
    df = fit_seeds(d, tmp_path / "p", seeds=(42, 43), lr=0.05, max_epochs=4, patience=2, min_steps=30)
    csv = pd.read_csv(tmp_path / "p" / "probe_results.csv", dtype={"seed": str})
    # converge protocol: at least min_steps optimizer steps although max_epochs=4 (one batch per epoch)
    seeds_rows = csv.iloc[:2]
    assert (seeds_rows["steps"] >= 30).all() and (seeds_rows["protocol"] == "converge").all()
    assert seeds_rows["train_loss"].notna().all() and seeds_rows["valid_loss"].notna().all()
    assert set(seeds_rows["loss_settled"].astype(str)) <= {"True", "False"}
    evar = fit_seeds(d, tmp_path / "e", seeds=(42,), lr=0.05, max_epochs=4, patience=2, protocol="evar")
    assert int(evar.iloc[0]["steps"]) <= 4 and int(evar.iloc[0]["epochs"]) <= 4
    assert list(csv["seed"]) == ["42", "43", "mean", "std"]
    vals = csv["test_score"].to_numpy()
    assert vals[2] == pytest.approx(vals[:2].mean()) and vals[3] == pytest.approx(pd.Series(vals[:2]).std())
    for s in (42, 43):
        ck = tmp_path / "p" / f"probe_seed{s}.ckpt"
        p = LinearProbe.load_from_checkpoint(str(ck))
        assert p.classes == ["a", "b", "c"]
    best = best_checkpoint(tmp_path / "p")
    seeds = csv.iloc[:2]
    assert best.name == seeds.iloc[int(seeds["val_score"].to_numpy().argmax())]["checkpoint"]
    with pytest.raises(OutputExistsError):
        fit_seeds(d, tmp_path / "p", seeds=(42,), max_epochs=1)
    # the CLI
    assert (
        main(
            [
                "probe",
                "--run",
                str(d),
                "--out",
                str(tmp_path / "q"),
                "--seeds",
                "7",
                "--max-epochs",
                "1",
                "--lr",
                "0.01",
            ]
        )
        == 0
    )
    assert (tmp_path / "q" / "probe_results.csv").exists() and (tmp_path / "q" / "probe_seed7.ckpt").exists()


def test_train_py_fit_with_probe_experiment_config(tmp_path, monkeypatch):
    """``train.py fit --config configs/experiment/probe_*.yaml`` on a run folder (2 epochs)."""
    import train
    from conftest import REPO_ROOT

    d = write_run(tmp_path / "r", {"train": 6, "valid": 2, "test": 2})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cfg = REPO_ROOT / "configs" / "experiment" / "probe_m2d_tiny_synth_octave_sine.yaml"
    train.main(["fit", "--config", str(cfg), "--data.init_args.run_dir", str(d), "--trainer.max_epochs", "2"])
    best = tmp_path / "outputs" / "probes" / "synth_octave_sine_m2d_tiny" / "best.ckpt"  # relative to the cwd
    assert best.exists()
    p = LinearProbe.load_from_checkpoint(str(best))
    assert p.head.in_features == 5 and p.classes == ["a", "b", "c"]


class _Payload:
    """Unpickling it creates ``marker``: the file exists iff loading ran code."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_train_py_ckpt_path_is_read_safely(tmp_path, monkeypatch):
    """``train.py test --ckpt_path``: a checkpoint written by ``fit`` is restored; the same checkpoint with a
    pickled object planted in it is refused before Lightning loads it, naming the file, and runs nothing;
    a text file given as a checkpoint names the file and the problem."""
    import train
    from analysis.runs.read import UnreadableFileError, UnsafeFileError
    from conftest import REPO_ROOT

    d = write_run(tmp_path / "r", {"train": 6, "valid": 2, "test": 2})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cfg = REPO_ROOT / "configs" / "experiment" / "probe_m2d_tiny_synth_octave_sine.yaml"
    base = ["--config", str(cfg), "--data.init_args.run_dir", str(d)]
    train.main(["fit", *base, "--trainer.max_epochs", "1"])
    best = tmp_path / "outputs" / "probes" / "synth_octave_sine_m2d_tiny" / "best.ckpt"
    train.main(["test", *base, "--ckpt_path", str(best)])  # a real checkpoint passes the check

    _Payload.marker = str(tmp_path / "CODE_RAN")
    ckpt = torch.load(best, weights_only=True)
    ckpt["callbacks"] = {"x": _Payload()}
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    with pytest.raises(UnsafeFileError) as e:
        train.main(["test", *base, "--ckpt_path", str(evil)])
    assert str(evil) in str(e.value) and "GLOBAL" in str(e.value)
    assert not (tmp_path / "CODE_RAN").exists()

    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(UnreadableFileError, match="notes.ckpt"):
        train.main(["test", *base, "--ckpt_path", str(text)])
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        train.main(["test", *base, "--ckpt_path", str(tmp_path / "missing.ckpt")])


def test_audio_classifier_equals_probe_on_stored_embeddings(tmp_path):
    """Accuracy computed from audio (same encoder, same crop) == the probe's accuracy on the stored
    test embeddings, and the logits agree."""
    enc = ToyEncoder()
    tr_a, tr_y = make_audio(5, 8)
    te_a, te_y = make_audio(6, 4)
    run = write_run_folder(tmp_path / "run", enc, {"train": (tr_a, tr_y), "test": (te_a, te_y)})
    ck = train_probe(run, tmp_path / "probe", epochs=3, lr=0.02)  # deliberately imperfect
    probe = LinearProbe.load_from_checkpoint(str(ck))
    dm = FeatureDataModule(str(run))
    r_probe = _trainer().test(probe, datamodule=dm, verbose=False)[0]
    clf = AudioClassifier(ToyEncoder(), str(ck))
    r_audio = _trainer().test(clf, datamodule=ToyAudioDataModule(te_a, te_y, batch_size=5), verbose=False)[0]
    for k in ("test/acc", "test/macro_recall", "test/macro_f1", *[f"test/recall/{c}" for c in CLASSES]):
        assert r_audio[k] == r_probe[k], k
    feats = torch.load(run / "features.pt")
    idx = pd.read_csv(run / "index.csv")
    test_rows = torch.tensor(idx[idx.split == "test"].sort_values("index").row.to_numpy())
    with torch.no_grad():
        assert torch.allclose(clf(te_a), probe(feats[test_rows]), atol=1e-5)
    # a probe for another class list is refused
    other = ToyAudioDataModule(te_a, te_y, classes=["x"] * 5)
    with pytest.raises(ValueError, match="was trained on classes"):
        _trainer().test(clf, datamodule=other, verbose=False)
