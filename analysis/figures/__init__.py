"""The figures of aape, drawn from arrays and tables with matplotlib (Agg), one page each. Figures are
returned, never saved here (:func:`analysis.runs.atomic.save_pdf` writes them). One module per family:
:mod:`~analysis.figures.selection` (the selected sets), :mod:`~analysis.figures.ablation` (ablation and
verdicts), :mod:`~analysis.figures.overlay` (the gallery's images), sharing :mod:`~analysis.figures.style`.

* :func:`cross_task_figure` — class(a) × class(b) Jaccard heatmap + per-layer distribution of the
  neurons shared by the two tasks.
* :func:`within_task_figure` — class × class Jaccard heatmap + neurons per class per layer.
* :func:`ablation_matrix_figure` — ablated class × evaluated class: change in recall vs baseline
  (on-target effects on the diagonal).
* :func:`k_curve_figure` — the change in a class's own recall after zeroing its k best AAPE neurons,
  with the mean and 95% interval of the matched random sets when present.
* :func:`confusion_change_figure` — the baseline confusion (true × predicted) and, for chosen conditions,
  the change in confusion counts vs the baseline (which errors an ablation adds or removes).
* :func:`entropy_distribution_figure` — the distribution of normalised entropy of all neurons, one curve
  per model (threshold-free: no quantile bar involved).
* :func:`compare_cross_task_figure`, :func:`compare_within_task_figure` — the cross-/within-task figures
  of several models side by side on one page.
* :func:`verdict_figure` — every ablated set of a run, task by task: its change with the bootstrap
  interval, its random draws' interval, specific and unstable sets marked.
* :func:`activation_overlay_figure` — a clip's log-mel spectrogram with one neuron's activation laid over
  it where the neuron fires, and the activation over time below (the listening gallery's images).
"""

from __future__ import annotations

from analysis.figures.ablation import (
    MAX_CONFUSION_PANELS,
    ablation_matrix_figure,
    confusion_change_figure,
    default_confusion_conditions,
    k_curve_figure,
    verdict_figure,
)
from analysis.figures.overlay import OVERLAY_ALPHA, OVERLAY_RGB, SPEC_PERCENTILES, activation_overlay_figure
from analysis.figures.selection import (
    compare_cross_task_figure,
    compare_within_task_figure,
    cross_task_figure,
    entropy_distribution_figure,
    within_task_figure,
)

__all__ = [
    "MAX_CONFUSION_PANELS",
    "OVERLAY_ALPHA",
    "OVERLAY_RGB",
    "SPEC_PERCENTILES",
    "ablation_matrix_figure",
    "activation_overlay_figure",
    "compare_cross_task_figure",
    "compare_within_task_figure",
    "confusion_change_figure",
    "cross_task_figure",
    "default_confusion_conditions",
    "entropy_distribution_figure",
    "k_curve_figure",
    "verdict_figure",
    "within_task_figure",
]
