"""``compare``: several models side by side, as the study lays out SSL (M2D) vs SL (supervised ViT).

``python -m analysis compare --model analysis outputs/paper_m2d/runs --model vit outputs/paper_vit/runs
[--config configs/report/paper.yaml] [--cross A B] [--within T] --dest DIR`` (and the pipeline's
``compare`` stage when a pipeline has two or more models) writes into ``dest``:

* ``task_level_neuron_statistics_<m1>_vs_<m2>...csv`` — one row per task, for each model ``<m>`` the
  columns ``classes_covered_<m>``, ``coverage_<m>``, ``selected_neurons_<m>``,
  ``mean_neurons_per_class_<m>``, ``median_neurons_per_class_<m>``, ``share_multiclass_<m>`` (as in the
  one-model table, :func:`analysis.app.report.task_statistics`), ``entropy_q01_<m>`` ... ``entropy_q50_<m>``
  and ``dead_neurons_<m>`` (normalised entropy of all neurons, no threshold:
  :func:`analysis.app.report.entropy_quantiles`), and for every model after the first
  ``neurons_per_class_ratio_<first>_to_<m>`` (mean neurons per class of the first ÷ of ``<m>``; NaN when
  ``<m>`` has none); a task missing for a model has NaN in its columns;
* ``compare_cross_task-<a>-<b>.pdf`` / ``compare_within_task-<t>.pdf`` — the cross-/within-task figures
  with one column per model on one page;
* ``entropy_distribution.pdf`` — per task, the distribution of normalised entropy of all neurons, one curve
  per model.

Without a report spec, a within-task figure is drawn for every task all models have, and no cross-task
figure. A figure's tasks must exist for every model.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pandas as pd

from analysis.app.report import (
    ReportSpec,
    TaskNeurons,
    cross_task,
    entropy_quantiles,
    entropy_values,
    load_task_neurons,
    task_statistics,
    within_task,
)
from analysis.figures import compare_cross_task_figure, compare_within_task_figure, entropy_distribution_figure
from analysis.runs.atomic import check_writable, save_csv, save_pdf
from analysis.runs.layout import (
    ENTROPY_DISTRIBUTION_PDF,
    compare_cross_task_name,
    compare_table_name,
    compare_within_task_name,
)
from analysis.runs.read import find_runs

log = logging.getLogger(__name__)

#: Columns of the one-model task table repeated per model in the comparison table.
PER_MODEL = [
    "classes_covered",
    "coverage",
    "selected_neurons",
    "mean_neurons_per_class",
    "median_neurons_per_class",
    "share_multiclass",
]


def compare_rows(tasks: Mapping[str, Mapping[str, TaskNeurons]]) -> pd.DataFrame:
    """The comparison table (module docstring) from model → task → :class:`TaskNeurons`."""
    models = list(tasks)
    order = list(dict.fromkeys(t for m in models for t in tasks[m]))
    rows = []
    for task in order:
        row: dict[str, object] = {"task": task}
        for m in models:
            tn = tasks[m].get(task)
            if tn is None:
                row.update({f"{c}_{m}": math.nan for c in PER_MODEL})
                continue
            row.setdefault("classes", len(tn.run.classes))
            stats = task_statistics(task, tn.run.classes, tn.masks, tn.n_selected)
            row.update({f"{c}_{m}": stats[c] for c in PER_MODEL})
            row.update({f"{k}_{m}": v for k, v in entropy_quantiles(tn.run.over_zero).items()})
        first = models[0]
        for m in models[1:]:
            a, b = (
                row.get(f"mean_neurons_per_class_{first}", math.nan),
                row.get(f"mean_neurons_per_class_{m}", math.nan),
            )
            row[f"neurons_per_class_ratio_{first}_to_{m}"] = a / b if b and not math.isnan(b) else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    lead = ["task", "classes"]
    return df[lead + [c for c in df.columns if c not in lead]]


def build_compare(
    models: Mapping[str, str | Path],
    *,
    spec: Optional[ReportSpec] = None,
    dest: str | Path,
    overwrite: bool = False,
    tasks: Optional[Sequence[str]] = None,
) -> dict[str, Path]:
    """Write the comparison of ``models`` (model suffix → folder holding its ``<task>_<suffix>/`` run
    folders, each with ``neurons.pt``) into ``dest``; ``tasks``: only these tasks (default: every run
    folder found). Returns name → path of every file written."""
    if len(models) < 2:
        raise ValueError(f"compare needs at least two models, got {list(models)}")
    found = {m: find_runs(d, m) for m, d in models.items()}
    if tasks is not None:
        found = {m: {t: d for t, d in runs.items() if t in tasks} for m, runs in found.items()}
    for m, runs in found.items():
        if not runs:
            raise FileNotFoundError(f"{models[m]}: no run folders '<task>_{m}' with over_zero.pt")
    common = [t for t in found[next(iter(found))] if all(t in r for r in found.values())]
    spec = spec if spec is not None else ReportSpec(within_task=common)
    needed = {t for pair in spec.cross_task for t in pair} | set(spec.within_task)
    for m, runs in found.items():
        missing = sorted(needed - set(runs))
        if missing:
            raise FileNotFoundError(
                f"{models[m]}: model {m!r} has no run folder for task(s) {missing} (found: {sorted(runs)})"
            )
    dest = Path(dest)
    names = list(models)
    targets = {"table": dest / compare_table_name(names), "entropy": dest / ENTROPY_DISTRIBUTION_PDF}
    targets.update({f"cross_task-{a}-{b}": dest / compare_cross_task_name(a, b) for a, b in spec.cross_task})
    targets.update({f"within_task-{t}": dest / compare_within_task_name(t) for t in spec.within_task})
    for p in targets.values():
        check_writable(p, overwrite)

    tasks = {m: {t: load_task_neurons(d, m) for t, d in runs.items()} for m, runs in found.items()}
    for m in tasks:
        for t, tn in tasks[m].items():
            tn.run.task = t
    cross = {(a, b): {m: cross_task(tasks[m][a], tasks[m][b]) for m in names} for a, b in spec.cross_task}
    save_csv(compare_rows(tasks), targets["table"], overwrite)
    for (a, b), per_model in cross.items():
        panels = {
            m: {
                "jac": jac,
                "classes_a": tasks[m][a].run.classes,
                "classes_b": tasks[m][b].run.classes,
                "per_layer": per_layer,
            }
            for m, (jac, per_layer) in per_model.items()
        }
        save_pdf(compare_cross_task_figure(panels, a, b), targets[f"cross_task-{a}-{b}"], overwrite)
    for t in spec.within_task:
        panels = {}
        for m in names:
            jac, counts = within_task(tasks[m][t])
            panels[m] = {"jac": jac, "classes": tasks[m][t].run.classes, "counts": counts}
        save_pdf(compare_within_task_figure(panels, t), targets[f"within_task-{t}"], overwrite)
    values = {t: {m: entropy_values(tasks[m][t].run.over_zero) for m in names} for t in common}
    save_pdf(entropy_distribution_figure(values), targets["entropy"], overwrite)
    log.info("comparison of %s written to %s", names, dest)
    return targets
