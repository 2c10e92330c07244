"""The ``pipeline`` verb's command line: its arguments (:func:`add_arguments`) and its logging
(:func:`setup_logging`: INFO messages of the project's loggers on stderr, stage by stage).
:func:`analysis.app.pipeline.run_pipeline` runs it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from analysis.app.pipeline_stages import STAGE_NAMES


def add_arguments(p: Any) -> None:
    p.add_argument("--config", default=None, help="pipeline YAML (configs/pipeline/*.yaml); required")
    p.add_argument(
        "--print_config",
        action="store_true",
        help="print the config with every default filled in and exit (without --config: the defaults of every section)",
    )
    p.add_argument("--out", default=None, help="output folder (overrides the config's 'out')")
    p.add_argument("--force", action="store_true", help="re-run every stage, replacing existing outputs")
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=STAGE_NAMES,
        metavar="STAGE",
        help=f"run only these stages ({' '.join(STAGE_NAMES)}); earlier stages must be finished",
    )


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted (callers and tests may
    replace it between pipeline runs in one process)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """INFO messages of this project's loggers on stderr (Lightning keeps its own handler)."""
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("aape", "analysis", "callbacks", "datamodules", "lightning_modules"):
        lg = logging.getLogger(name)
        if not lg.handlers:
            lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.propagate = False
