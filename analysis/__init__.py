"""aape's analysis, in three layers (docs/architecture.md):

* the functional core — the modules of this package itself: :mod:`.activation_stats` (counting),
  :mod:`.aape` (selection), :mod:`.overlap`, :mod:`.ablation`, :mod:`.stability`, :mod:`.figures`;
  tensors and frames in and out, no Lightning, no files;
* :mod:`analysis.runs` — the run-folder contract: every file name, reader and writer;
* :mod:`analysis.app` — the application: the pipeline, the step drivers, the CLI ``python -m analysis`` and the
  notebook API :mod:`analysis.app.notebook`.

``from analysis import open_run`` is the notebook API's entry (docs/api.md). It is imported on first use
(module ``__getattr__``), so importing the core (``import analysis.aape``) never loads the application.
"""

from __future__ import annotations

from typing import Any

#: Names this package hands on from the notebook API, imported when first asked for.
_APPLICATION = ("open_run", "Run")


def __getattr__(name: str) -> Any:
    if name in _APPLICATION:
        from analysis.app import notebook  # lazy on purpose: the core must not load the application

        return getattr(notebook, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_APPLICATION))
