"""``open_run(path)``: a finished pipeline output folder (or one statistics run folder) opened read-only for a
notebook: its tasks and models, one table per neuron, class set and top clip, the report's figures, the
neurons' top clips as audio players and the listening gallery. Everything is read through
:mod:`analysis.runs.read`; nothing is written."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from analysis.app.notebook import plots
from analysis.app.notebook.audio import Listening, read_clips
from analysis.app.notebook.folders import RunFolders, discover
from analysis.app.notebook.tables import class_sets_frame, neurons_frame, parse_unit, top_clips_frame
from analysis.runs.layout import (
    ABLATION_CSV,
    ABLATION_SUMMARY_CSV,
    GALLERY_NEURONS_DIR,
    INDEX_HTML,
    TASKS_CSV,
    gallery_neuron_page,
)
from analysis.runs.read import read_probe_results, read_run, read_table


@dataclass(frozen=True)
class GalleryLink:
    """A page of a listening gallery (its ``index.html``, or one neuron's page); shown as a link in Jupyter."""

    path: Path
    pages: int = 0

    def __fspath__(self) -> str:
        return str(self.path)

    def _repr_html_(self) -> str:
        more = f" ({self.pages} neuron pages)" if self.pages else ""
        return f'<a href="{self.path.as_uri()}" target="_blank">{html.escape(str(self.path))}</a>{more}'


def _shown(fig: Figure) -> Figure:
    """Detach a figure from pyplot: Jupyter shows it once, as the cell's value, and nothing accumulates."""
    plt.close(fig)
    return fig


class Run:
    """The outputs of one pipeline run, read-only. ``task`` / ``model`` arguments may be left out when the run
    has only one."""

    def __init__(self, path: str | os.PathLike, evar_root: Optional[str | os.PathLike] = None) -> None:
        self.path = Path(path)
        self.tree, self._folders = discover(self.path)
        self._evar_root = str(evar_root) if evar_root is not None else None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: tasks {self.tasks}, models {self.models})"

    # -- what is there --------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return sorted({t for t, _ in self._folders})

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(m for _, m in sorted(self._folders, key=lambda k: (k[1], k[0]))))

    def folders(self, task: Optional[str] = None, model: Optional[str] = None) -> RunFolders:
        """The folders of (task, model) (each may be left out when the run has only one)."""
        task = self._one(task, self.tasks, "task")
        model = self._one(model, self.models, "model")
        if (task, model) not in self._folders:
            raise KeyError(f"{self.path}: no run of model {model!r} on task {task!r} (runs: {sorted(self._folders)})")
        return self._folders[(task, model)]

    def _one(self, value: Optional[str], choices: list[str], what: str) -> str:
        if value is None:
            if len(choices) != 1:
                raise ValueError(f"{self.path}: name the {what}, one of {choices}")
            return choices[0]
        if value not in choices:
            raise KeyError(f"{self.path}: unknown {what} {value!r}; {what}s: {choices}")
        return value

    def classes(self, task: Optional[str] = None, model: Optional[str] = None) -> list[str]:
        return read_run(self.folders(task, model).run, stats=False).classes

    # -- tables ---------------------------------------------------------------------------------------
    def neurons(self, task: Optional[str] = None, model: Optional[str] = None) -> pd.DataFrame:
        """One row per neuron: probabilities per class, entropy, selection, and its class set's stability and
        ablation effect (:func:`analysis.app.notebook.tables.neurons_frame`)."""
        return neurons_frame(self.folders(task, model))

    def class_sets(self, task: Optional[str] = None, model: Optional[str] = None) -> pd.DataFrame:
        """One row per class: its AAPE set's size, stability and ablation effect vs matched random sets."""
        return class_sets_frame(self.folders(task, model))

    def ablation(self, task: Optional[str] = None, model: Optional[str] = None) -> pd.DataFrame:
        """``ablation.csv``: recall per condition (baseline, class sets, top-k, random draws) and class."""
        return read_table(plots._ablation(self.folders(task, model)) / ABLATION_CSV)

    def probe(self, task: Optional[str] = None, model: Optional[str] = None) -> pd.DataFrame:
        """``probe_results.csv`` of the linear probe (one row per seed, then mean and std)."""
        f = self.folders(task, model)
        if f.probe is None:
            raise FileNotFoundError(f"{self.path}: no probe results for model {f.model!r} on task {f.task!r}")
        return read_probe_results(f.probe)

    def report(self, table: str = "tasks") -> pd.DataFrame:
        """A table of the pipeline's report: ``tasks`` (one row per model × task) or ``ablation_summary`` (one
        row per ablated set with its test and verdict; ``headline`` is the same table)."""
        names = {"tasks": TASKS_CSV, "ablation_summary": ABLATION_SUMMARY_CSV, "headline": ABLATION_SUMMARY_CSV}
        if table not in names:
            raise ValueError(f"table must be one of {sorted(names)}, got {table!r}")
        if self.tree is None:
            raise FileNotFoundError(f"{self.path} is a run folder, not a pipeline output: it has no report")
        return read_table(self.tree.report / names[table])

    def top_clips(self, unit: Any, task: Optional[str] = None, model: Optional[str] = None) -> pd.DataFrame:
        """The top clips of ``unit`` (``(layer, neuron)``, ``"layer:neuron"`` or a row of :meth:`neurons`)."""
        f, l, n = self._unit(unit, task, model)
        return top_clips_frame(f, l, n)

    def listen(
        self,
        unit: Any,
        task: Optional[str] = None,
        model: Optional[str] = None,
        clips: Optional[int] = None,
        excerpt_seconds: Optional[float] = 4.0,
    ) -> Listening:
        """Audio players of the unit's top clips (the first ``clips``; None = all), excerpts of
        ``excerpt_seconds`` around the neuron's peak (None: whole clips)."""
        f, l, n = self._unit(unit, task, model)
        top = top_clips_frame(f, l, n)
        top = top if clips is None else top.head(clips)
        title = f"{f.model} on {f.task}: unit {l}:{n}"
        return Listening(title, read_clips(f, top, self._audio_root(), excerpt_seconds))

    def gallery(self, unit: Any = None, task: Optional[str] = None, model: Optional[str] = None) -> GalleryLink:
        """The listening gallery of (task, model) built by the pipeline, or the page of ``unit`` in it."""
        f = self.folders(task, model) if unit is None else self._unit(unit, task, model)[0]
        if f.gallery is None:
            raise FileNotFoundError(
                f"{self.path}: no listening gallery for model {f.model!r} on task {f.task!r} "
                f"(gallery.enabled: true in the pipeline config builds one)"
            )
        if unit is None:
            return GalleryLink(f.gallery / INDEX_HTML, len(list((f.gallery / GALLERY_NEURONS_DIR).glob("*.html"))))
        _, _, l, n = parse_unit(unit)
        page = f.gallery / gallery_neuron_page(l, n)
        if not page.is_file():
            raise KeyError(
                f"{f.gallery}: unit {l}:{n} has no page in the gallery (it shows the neurons chosen when "
                f"it was built: python -m analysis gallery --neurons {l}:{n} builds one)"
            )
        return GalleryLink(page)

    def _unit(self, unit: Any, task: Optional[str], model: Optional[str]) -> tuple[RunFolders, int, int]:
        t, m, l, n = parse_unit(unit)
        return self.folders(task or t, model or m), l, n

    def _audio_root(self) -> Optional[str]:
        if self._evar_root is not None:
            return self._evar_root
        if self.tree is not None and self.tree.synthetic_evar_root.is_dir():
            return str(self.tree.synthetic_evar_root)  # a copied tree's synthetic data travels with it
        return None

    # -- the report's figures -------------------------------------------------------------------------
    def plot_within_task(self, task: Optional[str] = None, model: Optional[str] = None) -> Figure:
        return _shown(plots.within_task_plot(self.folders(task, model)))

    def plot_cross_task(self, task_a: str, task_b: str, model: Optional[str] = None) -> Figure:
        return _shown(plots.cross_task_plot(self.folders(task_a, model), self.folders(task_b, model)))

    def plot_compare_within_task(self, task: Optional[str] = None, models: Optional[Sequence[str]] = None) -> Figure:
        task = self._one(task, self.tasks, "task")
        return _shown(plots.compare_within_task_plot({m: self.folders(task, m) for m in models or self.models}, task))

    def plot_compare_cross_task(self, task_a: str, task_b: str, models: Optional[Sequence[str]] = None) -> Figure:
        pairs = {m: (self.folders(task_a, m), self.folders(task_b, m)) for m in models or self.models}
        return _shown(plots.compare_cross_task_plot(pairs, task_a, task_b))

    def plot_entropy_distribution(
        self, tasks: Optional[Sequence[str]] = None, models: Optional[Sequence[str]] = None
    ) -> Figure:
        runs = {
            t: {m: self._folders[(t, m)] for m in models or self.models if (t, m) in self._folders}
            for t in tasks or self.tasks
        }
        return _shown(plots.entropy_distribution_plot(runs))

    def plot_ablation_matrix(self, task: Optional[str] = None, model: Optional[str] = None) -> Figure:
        return _shown(plots.ablation_matrix_plot(self.folders(task, model)))

    def plot_k_curve(self, task: Optional[str] = None, model: Optional[str] = None) -> Figure:
        return _shown(plots.k_curve_plot(self.folders(task, model)))

    def plot_confusion(
        self, task: Optional[str] = None, model: Optional[str] = None, conditions: Optional[Sequence[str]] = None
    ) -> Figure:
        return _shown(plots.confusion_plot(self.folders(task, model), conditions))

    def plot_ablation_vs_random(self, task: Optional[str] = None, model: Optional[str] = None) -> Figure:
        return _shown(plots.ablation_vs_random_plot(self.class_sets(task, model)))

    def plot_probabilities(self, unit: Any, task: Optional[str] = None, model: Optional[str] = None) -> Figure:
        f, l, n = self._unit(unit, task, model)
        table = neurons_frame(f)
        row = table[(table["layer"] == l) & (table["neuron"] == n)]
        if row.empty:
            raise KeyError(f"{f.run}: unit {l}:{n} is not a neuron of model {f.model!r}")
        return _shown(plots.probabilities_plot(row.iloc[0], read_run(f.run, stats=False).classes))


def open_run(path: str | os.PathLike, evar_root: Optional[str | os.PathLike] = None) -> Run:
    """Open a pipeline output folder (``out`` of the pipeline config) or one statistics run folder, read-only.
    ``evar_root``: read the audio of :meth:`Run.listen` there (default: the EVAR root the run recorded, or the
    output folder's own synthetic data)."""
    return Run(path, evar_root)
