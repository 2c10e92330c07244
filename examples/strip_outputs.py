"""Strip the outputs of notebooks so git holds only their sources (the pre-commit hook of
``.pre-commit-config.yaml``; ``tests/test_notebooks.py`` checks the committed ones are stripped).

    python examples/strip_outputs.py [--check] [NOTEBOOK ...]   (default: examples/*.ipynb)

Removes every code cell's outputs and execution count and the notebook- and cell-level metadata a run adds
(kernel and language details stay). ``--check`` changes nothing and exits 1 naming the notebooks that hold
outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

#: Notebook metadata kept (the rest, e.g. widget state, is dropped).
KEEP_METADATA = ("kernelspec", "language_info")


def stripped(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without outputs, execution counts and run metadata."""
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k in KEEP_METADATA})
    if "language_info" in nb.metadata:
        nb.metadata.language_info = nbformat.from_dict({"name": nb.metadata.language_info.get("name", "python")})
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report notebooks holding outputs (exit 1)")
    ap.add_argument("notebooks", nargs="*", type=Path)
    a = ap.parse_args(argv)
    paths = a.notebooks or sorted(Path(__file__).resolve().parent.glob("*.ipynb"))
    dirty = []
    for p in paths:
        raw = p.read_text(encoding="utf-8")
        clean = text(stripped(nbformat.reads(raw, as_version=4)))
        if raw != clean:
            dirty.append(p)
            if not a.check:
                p.write_text(clean, encoding="utf-8")
    for p in dirty:
        print(f"{p}: {'holds outputs or run metadata' if a.check else 'stripped'}", file=sys.stderr)
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
