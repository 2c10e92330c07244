"""Bad inputs at the run-folder/consumer boundary: run folders are checked against their consumer
(``manifest.json``: model, checkpoint sha256, task, classes, data list); ``--only`` needs the earlier stages
finished with this config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.runs import layout
from analysis.runs.identity import RunMismatchError, check_run, encoder_identity, run_identity
from lightning_modules.audio_classifier import load_probe
from lightning_modules.encoders import CrepeEncoder
from lightning_modules.linear_probe import LinearProbe

from _bad_inputs import KEY, MODEL, fake_run, pipeline_config, run_pipeline, write_config


# ============================================================================ 2. run folder vs consumer
def _run_with_identity(root: Path, ident: dict) -> Path:
    d = fake_run(root)
    (d / layout.MANIFEST).write_text(json.dumps({"task": "toy", **ident}), encoding="utf-8")
    return d


def test_run_folder_of_another_model_is_refused_by_the_ablation(tmp_path):
    from callbacks import AblationCallback

    untrained = CrepeEncoder(capacity="tiny", pretrained=False, name="crepe_tiny")
    pretrained = CrepeEncoder(capacity="tiny", pretrained=True, name="crepe_tiny")
    d = _run_with_identity(tmp_path, encoder_identity(untrained))

    class Module:
        encoder, classes, multilabel = pretrained, ["a", "b", "c"], False

    cb = AblationCallback(out_dir=str(tmp_path / "abl"), run_dir=str(d))
    with pytest.raises(RunMismatchError) as e:
        cb.check_sources(Module())
    msg = str(e.value)
    assert str(d / layout.MANIFEST) in msg and "checkpoint_sha256 is None" in msg
    assert encoder_identity(pretrained)["checkpoint_sha256"] in msg
    Module.encoder = untrained
    cb.check_sources(Module())  # the right model passes


def test_hugging_face_models_differ_by_their_weights(tmp_path):
    """Two folders of the same family, name and sites but other weights have different identities."""
    pytest.importorskip("transformers")
    from lightning_modules.encoders import HFAudioEncoder

    from _hf_models import save_tiny

    a = HFAudioEncoder(str(save_tiny("wav2vec2", tmp_path / "a" / "w2v", seed=0)))
    b = HFAudioEncoder(str(save_tiny("wav2vec2", tmp_path / "b" / "w2v", seed=1)))
    ia, ib = encoder_identity(a), encoder_identity(b)
    assert ia["checkpoint_sha256"] and ia["checkpoint_sha256"] != ib["checkpoint_sha256"]
    assert {k: v for k, v in ia.items() if k != "checkpoint_sha256"} == {
        k: v for k, v in ib.items() if k != "checkpoint_sha256"
    }


def test_probe_fitted_on_other_data_is_refused_by_the_ablation(tmp_path):
    from callbacks import AblationCallback

    enc = CrepeEncoder(capacity="tiny", pretrained=False)
    d = _run_with_identity(tmp_path, {**encoder_identity(enc), "data_list_sha256": "aaaa"})
    probe = LinearProbe(num_classes=3, embed_dim=8, source={**run_identity(d), "data_list_sha256": "bbbb"})

    class Module:
        encoder, probe, classes, multilabel = enc, None, ["a", "b", "c"], False
        hparams = type("H", (), {"probe_checkpoint": "probe_seed42.ckpt"})()

    Module.probe = probe
    with pytest.raises(RunMismatchError, match=r"data_list_sha256 is 'aaaa', the probe checkpoint probe_seed42.ckpt"):
        AblationCallback(out_dir=str(tmp_path / "abl"), run_dir=str(d)).check_sources(Module())


def test_probe_checkpoint_records_its_run_folder(tmp_path):
    from analysis.app.probe import fit_seeds

    d = _run_with_identity(tmp_path, {"encoder": "X", "data_list_sha256": "abc"})
    fit_seeds(d, tmp_path / "probe", seeds=[1], max_epochs=2, patience=1)
    probe = load_probe(tmp_path / "probe" / layout.probe_checkpoint_name(1))
    assert probe.source["data_list_sha256"] == "abc" and probe.source["classes"] == ["a", "b", "c"]


def test_check_run_names_both_values_and_requires_a_manifest(tmp_path):
    d = _run_with_identity(tmp_path, {"encoder_name": "crepe_tiny_untrained"})
    with pytest.raises(RunMismatchError) as e:
        check_run(d, {"encoder_name": "crepe_tiny", "task": "toy"}, consumer="model 'crepe_tiny'")
    assert "encoder_name is 'crepe_tiny_untrained', model 'crepe_tiny' expects 'crepe_tiny'" in str(e.value)
    with pytest.raises(RunMismatchError, match="checkpoint_sha256 is not recorded"):
        check_run(d, {"checkpoint_sha256": None}, consumer="x", require=True)
    (d / layout.MANIFEST).unlink()
    with pytest.raises(RunMismatchError, match="manifest.json: not found"):
        check_run(d, {"task": "toy"}, consumer="x", require=True)


def test_only_refuses_when_an_earlier_stage_has_not_finished(synthetic_root, tmp_path, capsys):
    path = write_config(pipeline_config(synthetic_root, tmp_path / "out"), tmp_path / "p.yaml")
    assert run_pipeline(path, "--only", "identify") == 1
    err = capsys.readouterr().err
    assert f"stage identify-{KEY} builds on stage stats-{KEY}" in err and "no marker" in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.slow
def test_run_folder_replaced_by_another_models_is_refused(synthetic_root, tmp_path, capsys):
    """The pretrained config's statistics finished, then its run folder was replaced by the untrained
    model's (same architecture, same name): the next run names a replaced file and writes nothing (the
    identity check naming manifest.json and the differing checkpoint: test_check_run_names_both_values...)."""
    import shutil

    untrained = pipeline_config(synthetic_root, tmp_path / "a")
    untrained["models"][MODEL]["init_args"].update(pretrained=False, name=MODEL)
    assert run_pipeline(write_config(untrained, tmp_path / "a.yaml"), "--only", "stats") == 0
    pretrained = write_config(pipeline_config(synthetic_root, tmp_path / "b"), tmp_path / "b.yaml")
    assert run_pipeline(pretrained, "--only", "stats") == 0
    shutil.rmtree(tmp_path / "b" / "runs" / KEY)
    shutil.copytree(tmp_path / "a" / "runs" / KEY, tmp_path / "b" / "runs" / KEY)
    capsys.readouterr()
    assert run_pipeline(pretrained, "--only", "identify", "probe") == 1
    err = capsys.readouterr().err
    # the stats marker's content records (tests/test_integrity.py) no longer match: --only refuses, naming
    # a replaced file of the run folder
    assert f"builds on stage stats-{KEY}" in err and str(tmp_path / "b" / "runs" / KEY) in err
    assert "content changed since the stage wrote it" in err
    assert not (tmp_path / "b" / "runs" / KEY / layout.NEURONS_CSV).exists()
    assert not (tmp_path / "b" / "probes").exists()
