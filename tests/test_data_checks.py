"""The data checks the README promises run before the first stage: a task whose test split (the probe and
the ablation are tested on it) or a listed identification split has no rows stops the pipeline at once,
naming the metadata CSV the user wrote (not a derived ``runs/.../index.csv``), and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.app.pipeline import run_pipeline
from conftest import make_task

TASK = "tiny"


def _rows(splits=("train", "valid", "test")) -> list[dict]:
    return [{"file_name": f"{c}_{s}_{i}.wav", "label": c, "split": s} for s in splits for c in "ab" for i in range(2)]


def _config(tmp_path: Path, **stats) -> Path:
    cfg = {
        "out": str(tmp_path / "out"),
        "data": {"evar_root": str(tmp_path / "evar"), "batch_size": 4},
        "tasks": {TASK: {"task_def": {"unit_sec": 0.05}}},
        "stats": stats,
        "models": {
            "m": {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "pretrained": False},
            }
        },
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "missing,stats,why",
    [
        ("test", {}, "the probe and the ablation are tested on it"),
        ("valid", {"identify_splits": ["train", "valid"]}, "stats.identify_splits counts it"),
    ],
)
def test_an_empty_split_stops_before_the_first_stage(tmp_path, capsys, missing, stats, why):
    csv = make_task(tmp_path / "evar", TASK, _rows([s for s in ("train", "valid", "test") if s != missing]))
    assert run_pipeline(str(_config(tmp_path, **stats))) == 1
    err = capsys.readouterr().err
    assert f"metadata {csv}: split {missing!r} of task {TASK!r} has no rows ({why})" in err, err
    assert "index.csv" not in err
    out = tmp_path / "out"
    assert not (out / "runs").exists() and not any(out.glob(".stages/*.json"))


def test_an_empty_valid_split_is_fine_when_nothing_counts_it(tmp_path):
    """No valid rows and identify_splits over train only: the probe carves its own validation rows."""
    from analysis.app.config import load_config
    from analysis.app.pipeline import Pipeline

    make_task(tmp_path / "evar", TASK, _rows(("train", "test")))
    Pipeline(load_config(_config(tmp_path, identify_splits=["train"]))).check_data()
