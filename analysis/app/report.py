"""``report``: the study's reports over all runs of one model suffix: the task statistics table and the
cross-/within-task figures, optionally mirrored to TensorBoard.

``task_level_neuron_statistics_<suffix>.csv`` — one row per task (columns: see :data:`TABLE_COLUMNS` and
:func:`task_statistics`).

Report configs (``configs/report/*.yaml``) name the figures::

    cross_task:            # list of [task_a, task_b]
      - [surge, nspitch]
    within_task: [gtzan]   # list of tasks

Without a config (and without ``--cross``/``--within``) a within-task figure is drawn for every task and no
cross-task figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch  # noqa: F401 - the doctests build masks with it
import yaml
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from analysis.aape import absent_neurons, neurons_to_masks, normalised_entropy
from analysis.figures import cross_task_figure, within_task_figure
from analysis.overlap import jaccard_matrix, per_layer_counts, shared_per_layer, union_mask
from analysis.runs import strict_yaml
from analysis.runs.atomic import check_writable, save_csv, save_pdf
from analysis.runs.layout import NEURONS_PT, cross_task_name, model_report_folder, task_table_name, within_task_name
from analysis.runs.identity import check_same_model
from analysis.runs.read import Run, count_selected, find_runs, read_neurons, read_run

log = logging.getLogger(__name__)

#: Fixed leading columns of the task statistics table; ``layer_<l>`` columns follow (one per layer).
TABLE_COLUMNS = [
    "task",
    "classes",
    "classes_covered",
    "coverage",
    "selected_neurons",
    "assigned_neurons",
    "class_assignments",
    "mean_neurons_per_class",
    "median_neurons_per_class",
    "share_multiclass",
]


@dataclass
class TaskNeurons:
    """A run with its class masks ``[C, L, N]`` (from ``neurons.pt``) and selected-neuron count."""

    run: Run
    masks: Tensor
    n_selected: int

    @property
    def task(self) -> str:
        return self.run.task or self.run.path.name


def load_task_neurons(run_dir: str | Path, suffix: str | None = None) -> TaskNeurons:
    """Read a run folder plus its ``neurons.pt``/``neurons.csv`` (written by ``identify``)."""
    run = read_run(run_dir, stats=True, suffix=suffix)
    L, N, C = run.over_zero.shape
    neurons = read_neurons(run.path, C, L)
    masks = neurons_to_masks(neurons, C, (L, N))
    absent = absent_neurons(run.over_zero)
    if bool((masks & absent).any()):
        raise ValueError(f"{run.path / NEURONS_PT}: contains neurons that are absent (NaN) in the statistics")
    n_sel = count_selected(run.path)
    if n_sel is None:
        n_sel = int(union_mask(masks).sum())
    return TaskNeurons(run=run, masks=masks, n_selected=n_sel)


def task_statistics(task: str, classes: list[str], masks: Tensor, n_selected: int) -> dict[str, Any]:
    """One row of the task statistics table from class masks ``[C, L, N]``.

    Columns: ``task``; ``classes`` (C); ``classes_covered`` (classes with ≥ 1 neuron); ``coverage``
    (covered / C); ``selected_neurons`` (neurons selected by lowest entropy, rows of neurons.csv);
    ``assigned_neurons`` (distinct neurons assigned to ≥ 1 class); ``class_assignments`` (sum of class
    set sizes); ``mean_neurons_per_class`` / ``median_neurons_per_class`` (over all C classes, empty
    ones included); ``share_multiclass`` (assigned neurons that belong to ≥ 2 classes / assigned
    neurons; NaN if none); ``layer_<l>`` (distinct assigned neurons in layer l).

    >>> m = torch.zeros(3, 2, 4, dtype=torch.bool); m[0, 0, 1] = m[1, 0, 1] = m[1, 1, 3] = True
    >>> r = task_statistics("t", ["a", "b", "c"], m, 5)
    >>> r["classes_covered"], r["assigned_neurons"], r["mean_neurons_per_class"], r["share_multiclass"], r["layer_0"]
    (2, 2, 1.0, 0.5, 1)
    """
    C = masks.shape[0]
    if len(classes) != C:
        raise ValueError(f"{task}: {len(classes)} class names for {C} class masks")
    sizes = masks.flatten(1).sum(1).double()
    membership = masks.sum(0)  # [L, N] classes per neuron
    assigned = membership > 0
    n_assigned = int(assigned.sum())
    row: dict[str, Any] = {
        "task": task,
        "classes": C,
        "classes_covered": int((sizes > 0).sum()),
        "coverage": float((sizes > 0).double().mean()),
        "selected_neurons": int(n_selected),
        "assigned_neurons": n_assigned,
        "class_assignments": int(sizes.sum()),
        "mean_neurons_per_class": float(sizes.mean()),
        "median_neurons_per_class": float(np.median(sizes.numpy())),
        "share_multiclass": float((membership >= 2).sum()) / n_assigned if n_assigned else float("nan"),
    }
    for l, n in enumerate(per_layer_counts(assigned).tolist()):
        row[f"layer_{l}"] = int(n)
    return row


#: Quantiles of the normalised entropy of all neurons reported per (model, task) (``entropy_q01`` ...).
ENTROPY_QUANTILES = (0.01, 0.05, 0.25, 0.5)


def entropy_values(over_zero: Tensor) -> np.ndarray:
    """Normalised entropy ``H / ln C`` of every present, not dead neuron (1-D, no threshold involved)."""
    h = normalised_entropy(over_zero).flatten().double().numpy()
    return h[np.isfinite(h)]


def entropy_quantiles(over_zero: Tensor) -> dict[str, float]:
    """``entropy_q01``, ``entropy_q05``, ``entropy_q25``, ``entropy_q50`` of :func:`entropy_values` and
    ``dead_neurons`` (present neurons that never fire for any class).

    >>> q = entropy_quantiles(torch.tensor([[[0.9, 0.0], [0.5, 0.5], [0.0, 0.0]]]))
    >>> round(q["entropy_q01"], 6), round(q["entropy_q50"], 6), q["dead_neurons"]
    (0.01, 0.5, 1)
    """
    h = entropy_values(over_zero)
    present = ~absent_neurons(over_zero)
    dead = int((present & (torch.nan_to_num(over_zero.float(), nan=0.0).sum(-1) == 0)).sum())
    out = {
        f"entropy_q{round(100 * q):02d}": float(np.quantile(h, q)) if h.size else float("nan")
        for q in ENTROPY_QUANTILES
    }
    out["dead_neurons"] = dead
    return out


@dataclass
class ReportSpec:
    """Which figures to draw."""

    cross_task: list[tuple[str, str]] = field(default_factory=list)
    within_task: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cross_task = [(str(a), str(b)) for a, b in self.cross_task]
        self.within_task = [str(t) for t in self.within_task]

    @staticmethod
    def from_yaml(paths: Iterable[str | Path]) -> "ReportSpec":
        spec = ReportSpec()
        for p in paths:
            p = Path(p)
            try:
                cfg = strict_yaml.safe_load(p.read_text(encoding="utf-8"), str(p)) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ValueError(f"{p}: cannot read report config: {e}") from e
            if not isinstance(cfg, dict):
                raise ValueError(f"{p}: expected a mapping with keys cross_task / within_task")
            unknown = set(cfg) - {"cross_task", "within_task", "description"}
            if unknown:
                raise ValueError(f"{p}: unknown keys {sorted(unknown)} (allowed: cross_task, within_task, description)")
            for i, pair in enumerate(cfg.get("cross_task") or []):
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                    raise ValueError(f"{p}: cross_task[{i}] must be a pair [task_a, task_b], got {pair!r}")
                spec.cross_task.append((str(pair[0]), str(pair[1])))
            for t in cfg.get("within_task") or []:
                spec.within_task.append(str(t))
        return spec


def cross_task(a: TaskNeurons, b: TaskNeurons) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Jaccard ``[Ca, Cb]`` and per-layer shared counts for two tasks of the same model (refuses others)."""
    check_same_model(a.run, b.run)
    jac = jaccard_matrix(a.masks, b.masks).numpy()
    per_layer = {k: v.numpy() for k, v in shared_per_layer(a.masks, b.masks).items()}
    return jac, per_layer


def within_task(t: TaskNeurons) -> tuple[np.ndarray, np.ndarray]:
    """Jaccard ``[C, C]`` between the task's classes and neurons per class per layer ``[C, L]``."""
    return jaccard_matrix(t.masks, t.masks).numpy(), per_layer_counts(t.masks).numpy()


def _table_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.tolist()) + " |")
    return "\n".join(lines)


def build_report(
    out: str | Path,
    suffix: str,
    *,
    spec: ReportSpec | None = None,
    dest: str | Path | None = None,
    tensorboard: str | Path | None = None,
    overwrite: bool = False,
    tasks: Iterable[str] | None = None,
) -> dict[str, Path]:
    """Write the task table and the figures of ``spec`` for all runs ``<out>/<task>_<suffix>/`` (only
    those of ``tasks`` when given; each of them must exist).

    Outputs go to ``dest`` (default ``<out>/report_<suffix>/``). Returns name → path of every file written.
    Each run must already have ``neurons.pt`` (``python -m analysis identify``).
    """
    runs = find_runs(out, suffix)
    if tasks is not None:
        tasks = list(tasks)
        absent = [t for t in tasks if t not in runs]
        if absent:
            raise FileNotFoundError(f"{out}: no run folder for task(s) {absent} with suffix '{suffix}'")
        runs = {t: d for t, d in runs.items() if t in tasks}
    if not runs:
        raise FileNotFoundError(f"{out}: no run folders '<task>_{suffix}' with over_zero.pt")
    dest = Path(dest) if dest is not None else model_report_folder(out, suffix)
    if spec is None:
        spec = ReportSpec(within_task=list(runs))
    needed = {t for pair in spec.cross_task for t in pair} | set(spec.within_task)
    missing = sorted(needed - set(runs))
    if missing:
        raise FileNotFoundError(
            f"{out}: no run folder for task(s) {missing} with suffix '{suffix}' (found: {sorted(runs)})"
        )
    table_path = dest / task_table_name(suffix)
    targets = {"table": table_path}
    for a, b in spec.cross_task:
        targets[f"cross_task-{a}-{b}"] = dest / cross_task_name(a, b)
    for t in spec.within_task:
        targets[f"within_task-{t}"] = dest / within_task_name(t)
    for p in targets.values():
        check_writable(p, overwrite)

    loaded = {t: load_task_neurons(d, suffix) for t, d in runs.items()}
    for t, tn in loaded.items():  # keep the folder's task name (manifest may differ in spelling)
        tn.run.task = t
    # validate every requested cross pair before writing anything
    cross = {(a, b): cross_task(loaded[a], loaded[b]) for a, b in spec.cross_task}

    rows = [task_statistics(t, tn.run.classes, tn.masks, tn.n_selected) for t, tn in loaded.items()]
    df = pd.DataFrame(rows)
    layer_cols = sorted([c for c in df.columns if c.startswith("layer_")], key=lambda c: int(c[6:]))
    df = df[TABLE_COLUMNS + layer_cols]
    writer = SummaryWriter(str(tensorboard)) if tensorboard is not None else None
    try:
        save_csv(df, table_path, overwrite)
        if writer is not None:
            writer.add_text(f"task_level_neuron_statistics_{suffix}", _table_markdown(df))
            for r in rows:
                for key in ("coverage", "mean_neurons_per_class", "share_multiclass", "assigned_neurons"):
                    writer.add_scalar(f"aape_{suffix}/{r['task']}/{key}", r[key])
        for (a, b), (jac, per_layer) in cross.items():
            fig = cross_task_figure(
                jac, loaded[a].run.classes, loaded[b].run.classes, a, b, per_layer, loaded[a].run.sites
            )
            save_pdf(fig, targets[f"cross_task-{a}-{b}"], overwrite, close=writer is None)
            if writer is not None:
                writer.add_figure(f"aape_{suffix}/cross_task-{a}-{b}", fig)
                writer.add_scalar(
                    f"aape_{suffix}/cross_task-{a}-{b}/mean_jaccard",
                    float(np.nanmean(jac)) if np.isfinite(jac).any() else float("nan"),
                )
        for t in spec.within_task:
            jac, counts = within_task(loaded[t])
            fig = within_task_figure(jac, loaded[t].run.classes, counts, t)
            save_pdf(fig, targets[f"within_task-{t}"], overwrite, close=writer is None)
            if writer is not None:
                writer.add_figure(f"aape_{suffix}/within_task-{t}", fig)
    finally:
        if writer is not None:
            writer.close()
    log.info("report written to %s", dest)
    return targets
