"""aape's analysis, in three layers (docs/architecture.md):

* the functional core — the modules of this package itself: :mod:`.activation_stats` (counting),
  :mod:`.aape` (selection), :mod:`.overlap`, :mod:`.ablation`, :mod:`.stability`, :mod:`.figures`;
  tensors and frames in and out, no Lightning, no files;
* :mod:`analysis.runs` — the run-folder contract: every file name, reader and writer;
* :mod:`analysis.app` — the application: the pipeline, the step drivers and the CLI ``python -m analysis``.
"""
