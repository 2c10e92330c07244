"""``train.py`` as users run it: subprocesses with timeouts, in a temporary working directory.

* ``predict --trainer.fast_dev_run=true`` with the group configs (trainer / model / data) on the
  synthetic octave task, for CREPE tiny and the tiny untrained M2D;
* the statistics experiment config run for real, then ``fit`` of the linear probe on its run folder
  with ``--trainer.fast_dev_run=true``;
* ``--help`` documents every constructor argument (in-process, same parser);
* a missing EVAR root is a clear error (in-process).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SYNTHETIC_CLIPS_PER_CLASS

TRAIN = REPO_ROOT / "train.py"
CONFIGS = REPO_ROOT / "configs"
TIMEOUT = 300  # seconds; imports alone take 10-20 s on a loaded 2-core machine


def run_train(args: list[str], cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, str(TRAIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"
    )


def group_predict_args(model_cfg: Path, evar_root: Path, tmp: Path) -> list[str]:
    return [
        "predict",
        "--trainer",
        str(CONFIGS / "trainer" / "cpu.yaml"),
        "--model",
        str(model_cfg),
        "--data",
        str(CONFIGS / "data" / "synth_octave_sine.yaml"),
        "--data.init_args.evar_root",
        str(evar_root),
        "--data.init_args.batch_size",
        "4",
        "--trainer.fast_dev_run=true",
        "--trainer.enable_progress_bar=false",
        "--trainer.default_root_dir",
        str(tmp / "lightning"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("model_cfg", ["crepe_tiny.yaml", "m2d_tiny_untrained.yaml"])
def test_predict_fast_dev_run_with_group_configs(model_cfg, synthetic_root, tmp_path):
    cfg = CONFIGS / "model" / model_cfg
    if not cfg.is_file():
        pytest.skip(f"{cfg.relative_to(REPO_ROOT)} not written yet")
    proc = run_train(group_predict_args(cfg, synthetic_root, tmp_path), tmp_path)
    assert_ok(proc)
    assert "fast_dev_run" in proc.stdout + proc.stderr  # Lightning announces the 1-batch run
    assert "Traceback" not in proc.stderr


def test_predict_rejects_a_missing_evar_root(tmp_path, monkeypatch):
    """In-process (fast): the error names the root that does not exist."""
    import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(Exception, match="no_such_root"):
        train.main(
            group_predict_args(CONFIGS / "model" / "crepe_tiny_untrained.yaml", tmp_path / "no_such_root", tmp_path)
        )


@pytest.mark.slow
def test_statistics_then_probe_fit(synthetic_root, tmp_path):
    """The CREPE statistics experiment config end to end (all 20 clips), then ``fit`` of the linear
    probe on the run folder it wrote (fast_dev_run)."""
    exp = CONFIGS / "experiment" / "crepe_tiny_synth_octave_sine.yaml"
    if not exp.is_file():
        pytest.skip(f"{exp.relative_to(REPO_ROOT)} not written yet")
    proc = run_train(
        [
            "predict",
            "--config",
            str(exp),
            "--data.init_args.evar_root",
            str(synthetic_root),
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
        ],
        tmp_path,
    )
    assert_ok(proc)
    run_dir = tmp_path / "outputs" / "stats" / "synth_octave_sine_crepe_tiny"
    import torch

    feats = torch.load(run_dir / "features.pt", weights_only=True)
    n_clips = 5 * SYNTHETIC_CLIPS_PER_CLASS  # 5 octaves in the synthetic fixture
    assert feats.shape == (n_clips, 256) and torch.isfinite(feats).all()
    over_zero = torch.load(run_dir / "over_zero.pt", weights_only=True)
    assert over_zero.shape[:2] == (6, 128)  # six CREPE sites padded to the widest (128 channels)

    try:
        from datamodules.features import FeatureDataModule  # noqa: F401
        from lightning_modules.linear_probe import LinearProbe  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"probe pieces not written yet: {exc}")
    proc = run_train(
        [
            "fit",
            "--trainer",
            str(CONFIGS / "trainer" / "cpu.yaml"),
            "--model",
            "lightning_modules.LinearProbe",
            "--data",
            "datamodules.FeatureDataModule",
            "--data.run_dir",
            str(run_dir),
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
            "--trainer.default_root_dir",
            str(tmp_path / "lightning"),
        ],
        tmp_path,
    )
    assert_ok(proc)


def _help(args: list[str], capsys) -> str:
    import train

    with pytest.raises(SystemExit) as ex:
        train.main(args)
    assert ex.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo line wrapping


def test_help_documents_arguments(capsys, tmp_path, monkeypatch):
    """``--help`` (in-process: the same parser as the subprocess runs) lists and documents the
    arguments, down to every CrepeEncoder constructor argument."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    out = _help(["predict", "--help"], capsys)
    for flag in (
        "--model",
        "--data",
        "--trainer",
        "--trainer.fast_dev_run",
        "--trainer.devices",
        "--trainer.strategy",
        "--trainer.precision",
        "--config",
    ):
        assert flag in out

    from lightning_modules.encoders import CrepeEncoder

    out = _help(
        [
            "predict",
            "--model",
            "lightning_modules.FeatureExtractor",
            "--model.encoder.help",
            "lightning_modules.encoders.CrepeEncoder",
        ],
        capsys,
    )
    params = [p for p in inspect.signature(CrepeEncoder.__init__).parameters if p != "self"]
    assert params, "CrepeEncoder has constructor arguments"
    for name in params:
        assert f"--encoder.{name}" in out, f"--help does not list {name}"
    # documented, not only listed: the docstring text shows next to the flags
    assert "frame hop in milliseconds" in out and "random initialisation" in out
    out = _help(["predict", "--model.help", "lightning_modules.FeatureExtractor"], capsys)
    assert "--model.encoder" in out and "the audio encoder" in out
