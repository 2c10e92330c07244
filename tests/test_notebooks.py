"""The example notebooks of examples/ run from top to bottom on a pipeline output the test builds (the folder is
handed over in ``AAPE_RUN``), draw their figures and audio players, and are committed without outputs (what
``examples/strip_outputs.py``, the pre-commit hook, removes is exactly what a run adds)."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
#: notebook → (figures it draws, audio players it shows) on the test's run
NOTEBOOKS = {"Analyze_ClassSpecificNeurons.ipynb": (5, 3), "Ablations.ipynb": (4, 0)}
STRIP = [sys.executable, str(EXAMPLES / "strip_outputs.py")]


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_every_example_notebook_is_listed_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_notebook_holds_no_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert subprocess.run([*STRIP, "--check", str(EXAMPLES / name)], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_on_a_pipeline_output(name, notebook_run, tmp_path, monkeypatch):
    monkeypatch.setenv("AAPE_RUN", str(notebook_run))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the kernel imports this checkout
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outs = _outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    figures, players = NOTEBOOKS[name]
    assert sum("image/png" in o.get("data", {}) for o in outs) == figures
    assert sum(o.get("data", {}).get("text/html", "").count("<audio") for o in outs) == players
    assert str(notebook_run) in "".join(o.get("data", {}).get("text/plain", "") for o in outs)
    ran = tmp_path / name
    nbformat.write(nb, ran)
    r = subprocess.run([*STRIP, "--check", str(ran)], capture_output=True, text=True)
    assert r.returncode == 1 and str(ran) in r.stderr
    assert subprocess.run([*STRIP, str(ran)], capture_output=True).returncode == 1  # stripped now
    assert ran.read_text(encoding="utf-8") == (EXAMPLES / name).read_text(encoding="utf-8")
