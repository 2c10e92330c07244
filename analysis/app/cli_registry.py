"""The one registry of ``python -m analysis`` verbs: :func:`verb` registers a verb (its one-line help, the
function adding its arguments, the function running it) in :data:`VERBS`; the verb modules
(:mod:`analysis.app.cli_data`, :mod:`~analysis.app.cli_analysis`, :mod:`~analysis.app.cli_evaluation`,
:mod:`~analysis.app.cli_pipeline`) register theirs, :mod:`analysis.app.cli` builds the parser from it.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Callable, Iterable

#: verb → (one-line help, add its arguments, run it). Filled by :func:`verb` below.
VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def default(fn: Callable, name: str) -> object:
    """The default of parameter ``name`` of ``fn``: the CLI shows the function's own defaults."""
    return inspect.signature(fn).parameters[name].default


def print_paths(paths: Iterable[Path]) -> int:
    """Print each path on its own line (what a verb wrote); exit code 0."""
    for path in paths:
        print(path)
    return 0


def verb(name: str, help: str, add: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]):
        VERBS[name] = (help, add, run)
        return run

    return register
