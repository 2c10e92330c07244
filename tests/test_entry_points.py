"""The console script of ``pyproject.toml`` (``aape``) is the CLI ``python -m analysis``: the same function,
installed beside the interpreter by ``pip install -e .`` (``make install``) and answering ``--help``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import analysis.__main__ as module_main
from analysis.app.cli import build_parser
from conftest import REPO_ROOT


def _scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def test_aape_is_the_function_behind_python_m_analysis():
    module, _, name = _scripts()["aape"].partition(":")
    assert getattr(importlib.import_module(module), name) is module_main.main


@pytest.mark.slow  # an interpreter imports the whole CLI (torch, Lightning)
def test_installed_aape_answers_help_like_python_m_analysis(monkeypatch):
    script = Path(sys.executable).parent / "aape"
    assert script.is_file(), f"{script} is missing: install the project (make install, i.e. pip install -e .)"
    env = {**os.environ, "COLUMNS": "100"}  # argparse wraps the help at the terminal's width
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120, env=env)
    monkeypatch.setenv("COLUMNS", "100")
    assert r.returncode == 0, r.stderr
    assert r.stdout == build_parser().format_help() and "pipeline" in r.stdout
