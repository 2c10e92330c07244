"""Duplicate YAML keys (``seed: 0`` then ``seed: 7``) are refused, naming the file, the key and both lines,
by every YAML reader: pipeline configs (before any stage: nothing is written), task definitions, report and
top-rate tables, and train.py's LightningCLI configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import train
from analysis.app.cli_analysis import _top_rate_table
from analysis.app.config import PipelineError, load_config
from analysis.app.report import ReportSpec
from analysis.runs.strict_yaml import DuplicateKeyError, duplicate_keys, safe_load
from conftest import REPO_ROOT
from datamodules.tasks import load_task_yaml


def _says(msg: str, path: Path, key: str, first: int, again: int) -> bool:
    return (
        str(path) in msg
        and f"duplicate key {key!r}" in msg
        and re.search(rf"line {again}\b.*line {first}\b", msg) is not None
    )


def test_the_loader_against_pyyaml_as_oracle():
    text = "a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\nlist:\n  - {x: 1, y: 2}\n  - {x: 1, x: 2}\n"
    assert duplicate_keys(text) == [("c", 3, 5), ("x", 8, 8)]
    clean = "a: 1\nb: {c: 2, d: 3}\nbase: &b {x: 1}\nuse: {<<: *b, x: 2}\n"
    assert duplicate_keys(clean) == [] and safe_load(clean) == yaml.safe_load(clean)
    with pytest.raises(DuplicateKeyError, match="'c' at line 5 .first given at line 3.*1 more"):
        safe_load(text, "t.yaml")
    with pytest.raises(yaml.constructor.ConstructorError):  # tags that build objects stay refused
        safe_load("x: !!python/object/apply:os.system ['true']\n")


def test_pipeline_config_with_a_repeated_key_stops_before_any_stage(tmp_path):
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "pipeline" / "demo.yaml").read_text(encoding="utf-8"))
    cfg["out"] = str(tmp_path / "out")
    text = yaml.safe_dump(cfg, sort_keys=False)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("seed:")) + 1
    path = tmp_path / "pipe.yaml"
    path.write_text(text + "seed: 7\n", encoding="utf-8")
    with pytest.raises(PipelineError) as e:
        load_config(path)
    assert _says(str(e.value), path, "seed", first, len(lines) + 1), e.value
    assert not (tmp_path / "out").exists()


def test_pipeline_cli_exits_with_the_message(tmp_path, capsys):
    from analysis.app.cli import main

    path = tmp_path / "pipe.yaml"
    path.write_text(f"out: {tmp_path / 'out'}\ntasks:\n  t: {{}}\n  t: {{}}\n", encoding="utf-8")
    assert main(["pipeline", "--config", str(path)]) != 0
    assert _says(capsys.readouterr().err, path, "t", 3, 4)
    assert not (tmp_path / "out").exists()


def test_task_definition(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("name: x\nmultilabel: false\nmultilabel: true\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_task_yaml(path)
    assert _says(str(e.value), path, "multilabel", 2, 3)


def test_report_and_top_rate_tables(tmp_path):
    rep = tmp_path / "report.yaml"
    rep.write_text("within_task: [a]\nwithin_task: [b]\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        ReportSpec.from_yaml([rep])
    assert _says(str(e.value), rep, "within_task", 1, 2)
    top = tmp_path / "top.yaml"
    top.write_text("top_rate:\n  a: 0.1\n  a: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        _top_rate_table(str(top))
    assert _says(str(e.value), top, "a", 2, 3)


def test_train_py_config(tmp_path, monkeypatch):
    path = tmp_path / "cli.yaml"
    path.write_text("seed_everything: 1\ntrainer:\n  max_epochs: 1\n  max_epochs: 2\n", encoding="utf-8")
    monkeypatch.setattr("sys.argv", ["train.py"])
    with pytest.raises(DuplicateKeyError) as e:
        train.main(["fit", "--config", str(path)], run=False)
    assert _says(str(e.value), path, "max_epochs", 3, 4)
    with pytest.raises(DuplicateKeyError) as e:  # the same text reaching jsonargparse's loader another way
        train.main(["fit", f"--trainer={path.read_text().split('trainer:')[1]}"], run=False)
    assert "duplicate key 'max_epochs'" in str(e.value)
