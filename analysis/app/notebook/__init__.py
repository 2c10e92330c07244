"""The notebook API: ``from analysis import open_run``; ``run = open_run("outputs/demo")`` opens a finished
pipeline output folder read-only (docs/api.md):

* ``run.tasks``, ``run.models``; ``run.neurons(task, model)`` — one row per neuron (probabilities per class,
  entropy, selection, its class set's stability and ablation effect); ``run.class_sets(...)``,
  ``run.ablation(...)``, ``run.probe(...)``, ``run.report()``;
* ``run.top_clips(unit)``, ``run.listen(unit)`` (audio players), ``run.gallery()``;
* ``run.plot_*`` — the report's figures (within/cross-task overlaps, model comparison, entropy distribution,
  ablation matrix, k-curve, confusion change) and two views of one neuron and of the ablation vs random.
"""

from analysis.app.notebook.run import GalleryLink, Run, open_run

__all__ = ["GalleryLink", "Run", "open_run"]
