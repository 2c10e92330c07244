"""Shared fixtures: everything on CPU, one device, no DataLoader workers, temporary folders, and a tiny
synthetic EVAR root. Helper functions here can be imported by test files (``from conftest import ...``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # never touch a GPU, even if one appears
os.environ["HF_HUB_OFFLINE"] = "1"  # Hugging Face models load from local folders only: never download

import numpy as np
import pytest
import soundfile as sf

from _ablation_toy import planted_toy  # after the environment above: it imports torch

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Files the tests need, shipped inside the repository (never edited; see tests/fixtures/README.md).
FIXTURES = REPO_ROOT / "tests" / "fixtures"
#: Real EVAR metadata (cremad.csv, cremad_head.csv, gtzan_reconstructed.csv).
EVAR_METADATA = FIXTURES / "evar_metadata"
#: Official-code M2D reference outputs for a tiny random-weight model (see its README.md).
M2D_REFERENCE = FIXTURES / "m2d_reference"
#: The study's published ablation neuron lists (a copy the configs under configs/ are compared with).
STUDY_ABLATIONS = FIXTURES / "study" / "ablations.yaml"

#: Synthetic tasks written into the session root by :func:`synthetic_root`.
SYNTHETIC_TASKS = ("synth_octave_sine", "synth_octave_saw")
SYNTHETIC_SEED = 0
SYNTHETIC_CLIPS_PER_CLASS = 4
SYNTHETIC_DURATION = 0.5


# ----------------------------------------------------------------------------- helpers
def write_wav(path: Path, data: np.ndarray, sample_rate: int = 16000, subtype: Optional[str] = None) -> Path:
    """Write ``data`` (``[S]`` or ``[S, C]``) as a wav file, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data)
    if subtype is None and path.suffix.lower() == ".wav" and data.dtype.kind == "f":
        subtype = "FLOAT"  # keeps NaN/inf and exact values; other formats use soundfile's default
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


def write_metadata(root: Path, task: str, rows: Sequence[Mapping[str, object]] | str) -> Path:
    """Write ``<root>/evar/metadata/<task>.csv`` from dict rows (or raw CSV text)."""
    import pandas as pd

    p = Path(root) / "evar" / "metadata" / f"{task}.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(rows, str):
        p.write_text(rows)
    else:
        pd.DataFrame(list(rows)).to_csv(p, index=False)
    return p


def touch_audio(root: Path, folder: str, file_names: Iterable[str], sr_dir: str = "16k") -> int:
    """Create empty placeholder files ``<root>/work/<sr_dir>/<folder>/<file_name>`` (fast)."""
    base = Path(root) / "work" / sr_dir / folder
    n = 0
    for name in file_names:
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
        n += 1
    return n


def make_task(
    root: Path,
    task: str,
    rows: Sequence[Mapping[str, object]],
    *,
    folder: Optional[str] = None,
    sample_rate: int = 16000,
    samples: int = 800,
    sr_dir: str = "16k",
) -> Path:
    """A tiny EVAR task: metadata rows plus a short deterministic float wav per used row."""
    csv = write_metadata(root, task, rows)
    rng = np.random.default_rng(0)
    for r in rows:
        name = str(r["file_name"])
        write_wav(
            Path(root) / "work" / sr_dir / (folder or task) / name,
            (0.1 * rng.standard_normal(samples)).astype(np.float32),
            sample_rate,
        )
    return csv


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def trainer_kwargs(tmp_path: Path) -> dict:
    """Keyword arguments for ``lightning.Trainer`` forcing cpu, one device, no logger clutter, tmp dirs."""
    return dict(
        accelerator="cpu",
        devices=1,
        default_root_dir=str(tmp_path / "lightning"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


@pytest.fixture
def data_kwargs() -> dict:
    """Keyword arguments for datamodules in tests: no workers, small batches."""
    return dict(num_workers=0, batch_size=4)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The planted toy's run folder, trained probe and test audio (``_ablation_toy.planted_toy``), per module."""
    return planted_toy(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide EVAR root with the tiny synthetic tasks :data:`SYNTHETIC_TASKS` (read-only: do
    not write into it; 5 octaves x 4 clips = 20 clips of 0.5 s per task: 10 train / 5 valid / 5 test)."""
    from datamodules.synthetic import write_task

    root = tmp_path_factory.mktemp("synthetic_evar")
    for task in SYNTHETIC_TASKS:
        write_task(root, task, SYNTHETIC_SEED, clips_per_class=SYNTHETIC_CLIPS_PER_CLASS, duration=SYNTHETIC_DURATION)
    return root


@pytest.fixture
def evar_metadata() -> Path:
    """The real EVAR metadata files shipped under ``tests/fixtures/evar_metadata``."""
    return EVAR_METADATA


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``build(folder)`` filled, built once per test session: with ``pytest -n N`` (pytest-xdist,
    as ``make test`` runs) the first worker that needs it builds it under a file lock in the session's shared
    temporary root and the others wait and reuse it (session fixtures are otherwise per worker). The users of
    such a folder only read it. A build that fails leaves nothing behind (the next one starts afresh)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        dest = tmp_path_factory.mktemp(name)
        build(dest)
        return dest
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the basetemp every worker's own basetemp is under
    dest, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir()
            try:
                build(dest)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
            done.write_text(worker, encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def gallery_pipeline(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A whole pipeline run (pretrained CREPE tiny, the tiny synthetic task) with its listening gallery and a
    report linking it: ``(Pipeline, run folder)`` (top_clips.pt from the oracle of tests/_top_clips.py)."""
    from _gallery_run import MODEL, TASK, make_run

    from analysis.app.config import load_config
    from analysis.app.pipeline import Pipeline

    def build(dest: Path) -> None:
        pipe, _ = make_run(synthetic_root, dest)
        pipe.run(None)  # the remaining stages: report, probe, ablation, gallery, summary

    dest = built_once(tmp_path_factory, "gallery_pipeline", build)
    pipe = Pipeline(load_config(dest / "pipe.yaml"))
    return pipe, pipe.run_dir(TASK, MODEL)


@pytest.fixture(scope="session")
def notebook_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small complete pipeline output (two synthetic tasks × pretrained and untrained CREPE tiny, every
    stage; tests/_notebook_run.py) for the notebook API and the example notebooks. Read-only."""
    from _notebook_run import make_notebook_run
    from datamodules.synthetic import write_task

    def build(tmp: Path) -> None:
        for task in SYNTHETIC_TASKS:
            write_task(
                tmp / "evar",
                task,
                SYNTHETIC_SEED,
                clips_per_class=SYNTHETIC_CLIPS_PER_CLASS,
                duration=SYNTHETIC_DURATION,
            )
        make_notebook_run(tmp / "evar", tmp)

    return built_once(tmp_path_factory, "notebook_run", build) / "out"


def run_train_predict(work: Path, cfg: dict, devices: int, timeout: float):
    """``train.py predict`` on the LightningCLI config ``cfg`` (written to ``work/config.yaml``) with
    ``devices`` CPU processes (gloo DDP when more than one), as a subprocess in ``work`` with the repository and
    ``tests/`` importable; returns the ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    import yaml

    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "predict",
        "--config",
        str(work / "config.yaml"),
        f"--trainer.devices={devices}",
        "--return_predictions=false",
    ]
    if devices > 1:
        args.append("--trainer.strategy=ddp")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]))
    return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
