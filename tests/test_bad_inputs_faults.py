"""Faults at the output folder: a lock per output folder, stale temporary files removed, an interrupted stage
re-run by itself, and SIGKILL during the statistics and during the probe checkpoint write (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analysis.app.runner import OutputLock
from analysis.runs import layout
from analysis.runs.atomic import copy_file, remove_stale_temp
from analysis.runs.layout import OutputTree
from analysis.runs.read import read_features, read_lightning_checkpoint, read_run
from lightning_modules.audio_classifier import load_probe

from _bad_inputs import KEY, TASK, pipeline_config, run_pipeline, write_config
from conftest import REPO_ROOT


# ============================================================================ 5. faults
def _synthetic_config(tmp_path: Path) -> Path:
    """A config whose only cheap stage is ``data`` (synthetic tasks written into the output folder)."""
    cfg = pipeline_config(tmp_path, tmp_path / "out")
    cfg["data"] = {"synthetic": {"clips_per_class": 3, "duration": 0.2, "octaves": [2, 3]}, "batch_size": 8}
    return write_config(cfg, tmp_path / "syn.yaml")


def test_second_pipeline_on_the_same_output_fails_at_once(tmp_path, capsys):
    path = _synthetic_config(tmp_path)
    with OutputLock(OutputTree(tmp_path / "out"), note="the first pipeline"):
        assert run_pipeline(path, "--only", "data") == 1
    err = capsys.readouterr().err
    assert "another pipeline is writing into" in err and str(tmp_path / "out" / ".pipeline.lock") in err
    assert f'"pid": {os.getpid()}' in err and "choose another --out" in err
    assert not (tmp_path / "out" / "evar").exists()
    assert run_pipeline(path, "--only", "data") == 0  # released


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".pipeline.lock").write_text(json.dumps({"pid": dead.pid, "host": "here"}))
    assert run_pipeline(_synthetic_config(tmp_path), "--only", "data") == 0
    assert (tmp_path / "out" / ".pipeline.lock").read_text() == ""  # released on exit


def test_stale_temporary_files_are_removed_on_the_next_run(tmp_path):
    path = _synthetic_config(tmp_path)
    out = tmp_path / "out"
    assert run_pipeline(path, "--only", "data") == 0
    csv = out / "evar" / "evar" / "metadata" / f"{TASK}.csv"
    planted = [
        csv.parent / f".{csv.name}.aape-k2j4x9q1.tmp",
        csv.parent / f".{csv.name}.ab12cd34.tmp",
        out / "runs" / f".{KEY}.aape-x1y2z3w4.tmp" / "stats.pt",
        out / ".staging" / KEY / "over_zero.pt",
    ]
    keep = [out / "notes.tmp", csv.parent / "my.tmp"]
    for p in planted + keep:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    assert run_pipeline(path, "--only", "data") == 0
    assert [p for p in planted if p.exists()] == [] and not (out / ".staging").exists()
    assert all(p.exists() for p in keep)


def test_interrupted_stage_reruns_by_itself(tmp_path):
    path = _synthetic_config(tmp_path)
    out = tmp_path / "out"
    assert run_pipeline(path, "--only", "data") == 0
    tree = OutputTree(out)
    csv = out / "evar" / "evar" / "metadata" / f"{TASK}.csv"
    good = csv.read_bytes()
    # what a killed attempt leaves: its running marker and partial outputs
    tree.stage_running(f"data-{TASK}").write_text(json.dumps({"pid": 1, "started": "earlier"}))
    csv.write_text("half")
    assert run_pipeline(path, "--only", "data") == 0  # no --force
    assert csv.read_bytes() == good and not tree.stage_running(f"data-{TASK}").exists()


def test_outputs_without_any_marker_are_not_overwritten(tmp_path, capsys):
    path = _synthetic_config(tmp_path)
    csv = tmp_path / "out" / "evar" / "evar" / "metadata" / f"{TASK}.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("someone else's file\n")
    assert run_pipeline(path, "--only", "data") == 1
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
    cfg = pipeline_config(synthetic_root, tmp_path / "out", trainer={"devices": 3, "strategy": "ddp"})
    cfg["tasks"][TASK].update(limit=1, predict_splits=["train"])
    assert run_pipeline(write_config(cfg, tmp_path / "ddp.yaml"), "--only", "stats") == 1
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
    r = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT.format(patch=patch), "pipeline", "--config", str(config), "--only", *only],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if layout.is_temp_name(p.name)]


@pytest.mark.slow
@pytest.mark.parametrize("patch", [KILL_IN_PREDICT, KILL_IN_RUN_FOLDER_WRITE], ids=["predict", "run-folder-write"])
def test_sigkill_during_statistics_resumes_without_force(synthetic_root, tmp_path, patch):
    out = tmp_path / "out"
    path = write_config(pipeline_config(synthetic_root, out), tmp_path / "p.yaml")
    _killed(path, patch, "stats")
    run = out / "runs" / KEY
    assert not run.exists()  # nothing half-written under the final name
    assert OutputTree(out).stage_running(f"stats-{KEY}").exists()
    assert run_pipeline(path, "--only", "stats") == 0  # no --force
    read_run(run, stats=True)
    assert read_features(run).features.shape[0] == 20
    assert _temp_files(out) == [] and not (out / ".staging").exists()
    assert not OutputTree(out).stage_running(f"stats-{KEY}").exists()


@pytest.mark.slow
def test_sigkill_during_probe_checkpoint_write_resumes_without_force(synthetic_root, tmp_path):
    out = tmp_path / "out"
    path = write_config(pipeline_config(synthetic_root, out), tmp_path / "p.yaml")
    assert run_pipeline(path, "--only", "stats") == 0
    _killed(path, KILL_IN_PROBE_COPY, "probe")
    ckpt = out / "probes" / KEY / layout.probe_checkpoint_name(42)
    assert not ckpt.exists()  # the half copy went to a temporary name
    assert _temp_files(out)  # ... which is still there
    assert run_pipeline(path, "--only", "probe") == 0  # no --force
    assert read_lightning_checkpoint(ckpt)["epoch"] >= 0 and load_probe(ckpt).source["task"] == TASK
    assert _temp_files(out) == []
