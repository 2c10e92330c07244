"""The tuning part of the report: one page per model (``models/<model>/tuning/index.html``: the figures of
each class's units along every dimension, a sortable table of the class-specific units' preferred values)
and the summary's section (the range claims of ``tuning_ranges.csv`` as sentences, each with its interval
and the random-unit comparison).

The per-model work is :func:`build_tuning_report` (pipeline stage ``tuning_report``, verb ``tuning``); the
summary reads what it wrote (:func:`tuning_section`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from analysis.app import html as H
from analysis.app.tuning import class_figure, class_units, range_rows
from analysis.runs.atomic import save_csv, save_text
from analysis.runs.layout import (
    INDEX_HTML,
    TUNING_RANGES_CSV,
    OutputTree,
    figure_preview,
    tuning_csv,
    tuning_figure_name,
)
from analysis.runs.read import read_table, read_tuning_table

#: Columns of ``tuning_ranges.csv`` (one row per model × dimension × task × class with a range).
RANGE_COLUMNS = [
    "model",
    "dimension",
    "task",
    "class",
    "range_lo",
    "range_hi",
    "set_size",
    "in_range",
    "n_units",
    "fraction",
    "ci_lo",
    "ci_hi",
    "random_mean",
    "random_lo",
    "random_hi",
    "p_value",
]


def build_tuning_report(
    model: str,
    dimensions: list[str],
    task_runs: dict[str, Path],
    tuning_dir: str | Path,
    overwrite: bool = False,
    tensorboard: Optional[str | Path] = None,
) -> list[Path]:
    """Figures (dimension × task), ``tuning_ranges.csv`` and the tuning page of one model in ``tuning_dir``;
    ``task_runs``: task → its run folder (with ``neurons.pt``). Returns the files written."""
    d = Path(tuning_dir)
    out, rows = [], []
    for dim in dimensions:
        for task, run in task_runs.items():
            out.append(class_figure(d, dim, task, run, overwrite, tensorboard))
            rows += range_rows(model, dim, task, d, run)
    ranges = pd.DataFrame(rows, columns=RANGE_COLUMNS)
    out.append(save_csv(ranges, d / TUNING_RANGES_CSV, overwrite=overwrite))
    out.append(save_text(tuning_page(model, dimensions, task_runs, d, ranges), d / INDEX_HTML, overwrite=overwrite))
    return out


def _selected_table(dimension: str, task_runs: dict[str, Path], tuning_dir: Path) -> pd.DataFrame:
    """The tuning rows of the units some class of some task selected, with the classes that selected them."""
    table = read_tuning_table(tuning_dir, dimension)
    chosen: dict[tuple[int, int], list[str]] = {}
    for task, run in task_runs.items():
        for cls, units in class_units(run).items():
            for u in units:
                chosen.setdefault(u, []).append(f"{task}:{cls}")
    keys = list(zip(table["layer"].astype(int), table["unit"].astype(int)))
    keep = [k in chosen for k in keys]
    t = table[keep].copy()
    t.insert(0, "selected_for", [", ".join(chosen[k]) for k, m in zip(keys, keep) if m])
    return t.drop(columns=["bounded"])


def tuning_page(
    model: str, dimensions: list[str], task_runs: dict[str, Path], tuning_dir: Path, ranges: pd.DataFrame
) -> str:
    """``models/<model>/tuning/index.html``."""
    body = [
        f"<h1>Tuning curves of {H.esc(model)}</h1>",
        "<p>Each stimulus set varies one parameter and draws everything else at random; a unit's curve is "
        "P(active | value). Preferred value: the centre of the curve's peak; bandwidth: full width at half "
        "maximum (edges interpolated; a region reaching the grid's end stops there); selectivity: "
        "(peak − mean of the other values) / (peak + mean of the other values). Full tables: "
        + ", ".join(f"<a href='{H.esc(tuning_csv(d))}'>{H.esc(tuning_csv(d))}</a>" for d in dimensions)
        + ".</p>",
    ]
    for dim in dimensions:
        body.append(f"<h2>{H.esc(dim)}</h2>")
        for task in task_runs:
            pdf = tuning_figure_name(dim, task)
            if (tuning_dir / pdf).is_file():
                body.append(H.figure(figure_preview(pdf).as_posix(), f"{dim}: each class's units of {task}", pdf))
        body.append(f"<h3>Class-specific units along {H.esc(dim)} (click a header to sort)</h3>")
        body.append(H.table(_selected_table(dim, task_runs, tuning_dir)))
    if len(ranges):
        body.append("<h2>Preferred values inside each class's own range</h2>")
        body += [f"<p>{H.esc(s)}</p>" for s in range_sentences(ranges)]
        body.append(H.table(ranges.drop(columns=["model"])))
    return H.page(f"aape tuning: {model}", "\n".join(body))


def range_sentences(ranges: pd.DataFrame) -> list[str]:
    """One claim per row of ``tuning_ranges.csv``: the share with its Wilson interval, the random units'
    share and interval, and the exact test."""
    out = []
    for r in ranges.to_dict("records"):
        who = f"{r['model']} on {r['task']}"
        if not r["n_units"] or math.isnan(float(r["fraction"])):
            out.append(
                f"{who}: none of the {r['set_size']} {r['class']} units has a preferred {r['dimension']} "
                "(no curve with a peak)."
            )
            continue
        out.append(
            f"{who}: {r['in_range']} of {r['n_units']} {r['class']} units ({r['fraction']:.0%}, 95% Wilson "
            f"[{r['ci_lo']:.0%}, {r['ci_hi']:.0%}]) prefer a {r['dimension']} in [{r['range_lo']:g}, "
            f"{r['range_hi']:g}); random sets of the same size: {r['random_mean']:.0%} (95% of draws in "
            f"[{r['random_lo']:.0%}, {r['random_hi']:.0%}]), exact p = {r['p_value']:.2g}."
        )
    return out


def tuning_section(tree: OutputTree, models: Iterable[str]) -> Optional[tuple[pd.DataFrame, str, str]]:
    """The summary's tuning section, when a tuning report exists: (every model's ``tuning_ranges.csv``
    stacked, markdown, HTML)."""
    parts, pages = [], []
    for m in models:
        csv = tree.tuning(m) / TUNING_RANGES_CSV
        if csv.is_file():
            parts.append(read_table(csv))
            pages.append((m, "../" + (tree.tuning(m) / INDEX_HTML).relative_to(tree.root).as_posix()))
    if not pages:
        return None
    ranges = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RANGE_COLUMNS)
    sentences = range_sentences(ranges)
    md = [f"- tuning page of {m}: [{p}]({p})" for m, p in pages] + [f"- {s}" for s in sentences]
    html = H.link_list([(p, f"tuning page of {m}") for m, p in pages]) + "".join(
        f"<p>{H.esc(s)}</p>" for s in sentences
    )
    return ranges, "\n".join(md), html


def steering_sentences(table: pd.DataFrame, model: str) -> list[str]:
    """Per task and class of a model's ``steering.csv``: the class's probability at the smallest and the
    largest gain, against the unablated value and the random sets' band, with the exact test."""
    out = []
    t = table[table["metric"] == "probability"]
    for (task, cls), rows in t.groupby(["task", "class"], sort=False):
        for g in sorted({float(rows["gain"].min()), float(rows["gain"].max())} - {1.0}):
            r = rows[rows["gain"] == g].iloc[0]
            out.append(
                f"{model} on {task}, {cls}: its {int(r.set_size)} units ×{g:g} move P({cls}) on its clips "
                f"from {r.baseline:.3f} to {r.on_target:.3f}; {int(r.random_draws)} matched random sets: "
                f"[{r.random_lo:.3f}, {r.random_hi:.3f}], exact p = {r.p_value:.2g}."
            )
    return out


def steering_section(tree: OutputTree, models: Iterable[str]) -> Optional[tuple[str, str]]:
    """The summary's steering section (markdown, HTML) from every model's ``steering.csv``, when one exists."""
    md, html = [], []
    for m in models:
        if tree.steering(m).is_file():
            rel = "../" + tree.steering(m).relative_to(tree.root).as_posix()
            sentences = steering_sentences(read_table(tree.steering(m)), m)
            md += [f"- {m}: [{rel}]({rel})"] + [f"  - {s}" for s in sentences]
            html.append(
                f"<h3>{H.esc(m)} (<a href='{H.esc(rel)}'>steering.csv</a>)</h3>"
                + "".join(f"<p>{H.esc(s)}</p>" for s in sentences)
            )
    return ("\n".join(md), "".join(html)) if md else None
