"""``summary``: the headline tables and the human-readable report of a pipeline run (``report/summary.md``,
``report/index.html``, ``report/headline.csv``, ``report/tasks.csv``).

Every number here is computed from the stage outputs (``neurons.pt``/``classes.txt`` of the statistics
run folder and ``ablation.csv`` of the ablation stage), never typed: :func:`headline_rows` is a plain
function of those files, and the tests recompute it from them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from analysis.ablation import ALL_CLASSES as ALL
from analysis.app.html import ReportSection, report_page
from analysis.app.html import table as html_table
from analysis.runs.atomic import save_csv, save_text
from analysis.runs.layout import (ABLATION_CSV, GALLERY_DIR, HEADLINE_CSV, INDEX_HTML, PROBE_RESULTS, SUMMARY_MD,
                                  TASKS_CSV, OutputTree, figure_preview, within_task_name)
from analysis.runs.read import (read_classes, read_manifest, read_neurons, read_over_zero, read_table,
                                selection_warnings)

HEADLINE_COLUMNS = [
    "model", "task", "class", "neurons", "on_target_delta", "random_delta_mean", "random_delta_lo",
    "random_delta_hi", "random_draws", "off_target_delta_mean", "baseline_recall",
]
TASK_COLUMNS = ["model", "task", "classes", "classes_covered", "neurons_per_class", "selected_neurons",
                "baseline_accuracy", "mean_on_target_delta", "mean_random_delta", "mean_off_target_delta"]


def neurons_per_class(run_dir: str | Path) -> dict[str, int]:
    """Class name → number of (layer, neuron) pairs assigned to it in ``neurons.pt``."""
    classes = read_classes(run_dir)
    sets = read_neurons(run_dir, len(classes), read_over_zero(run_dir).shape[0])
    return {c: int(sum(int(t.numel()) for t in layers)) for c, layers in zip(classes, sets)}


def _quantiles(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if len(x) == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))


def headline_rows(model: str, task: str, run_dir: str | Path, ablation_csv: str | Path) -> pd.DataFrame:
    """One row per class of ``task``: the size of its AAPE set, the change in its own recall when the set
    is ablated (``on_target_delta``), the same for size- and layer-matched random sets (mean and central
    95% interval over draws), and the mean change of the other classes (``off_target_delta_mean``).
    Classes without neurons get NaN deltas (nothing was ablated)."""
    counts = neurons_per_class(run_dir)
    t = read_table(ablation_csv)
    base = t[t["kind"] == "baseline"].set_index("class")["accuracy"]
    rows = []
    for c, n in counts.items():
        cond = f"class:{c}"
        own = t[(t["condition"] == cond)]
        on = own[own["class"] == c]["delta"]
        off = own[(own["class"] != c) & (own["class"] != ALL)]["delta"]
        rnd = t[(t["kind"] == "random") & t["condition"].str.startswith(f"random:{cond}:") & (t["class"] == c)]
        d = rnd["delta"].to_numpy(dtype=float)
        lo, hi = _quantiles(d)
        rows.append(dict(
            model=model, task=task, **{"class": c}, neurons=n,
            on_target_delta=float(on.iloc[0]) if len(on) else math.nan,
            random_delta_mean=float(d.mean()) if len(d) else math.nan,
            random_delta_lo=lo, random_delta_hi=hi, random_draws=len(d),
            off_target_delta_mean=float(off.mean()) if len(off) else math.nan,
            baseline_recall=float(base.get(c, math.nan)),
        ))
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def task_rows(headline: pd.DataFrame, ablation: dict[tuple[str, str], str | Path]) -> pd.DataFrame:
    """One row per (model, task), aggregated from :func:`headline_rows`."""
    rows = []
    for (model, task), g in headline.groupby(["model", "task"], sort=False):
        t = read_table(ablation[(model, task)])
        base = t[(t["kind"] == "baseline") & (t["class"] == ALL)]["accuracy"]
        covered = g[g["neurons"] > 0]
        rows.append(dict(
            model=model, task=task, classes=len(g), classes_covered=len(covered),
            neurons_per_class=float(g["neurons"].mean()), selected_neurons=int(g["neurons"].sum()),
            baseline_accuracy=float(base.iloc[0]) if len(base) else math.nan,
            mean_on_target_delta=float(covered["on_target_delta"].mean()) if len(covered) else math.nan,
            mean_random_delta=float(covered["random_delta_mean"].mean()) if len(covered) else math.nan,
            mean_off_target_delta=float(covered["off_target_delta_mean"].mean()) if len(covered) else math.nan,
        ))
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def _fmt(x: object, signed: bool = False) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:+.3f}" if signed else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def _signed(col: str) -> bool:
    return "delta" in col


def markdown_table(df: pd.DataFrame, columns: Optional[Sequence[str]] = None) -> str:
    cols = list(columns or df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(_fmt(r[c], _signed(c)) for c in cols) + " |")
    return "\n".join(out)


@dataclass
class ReportInputs:
    """What the final report shows: tables, findings (plain sentences computed from the tables),
    figures and files (paths relative to the report folder), manifests (run folder → manifest dict), the
    selection's notes per (model, task), PNG previews of the PDF figures, the figures of each (model, task)
    and its gallery's index page."""

    tasks: pd.DataFrame
    headline: pd.DataFrame
    findings: list[str]
    figures: list[str]
    files: list[str]
    manifests: dict[str, dict]
    probe: Optional[pd.DataFrame] = None
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    previews: dict[str, str] = field(default_factory=dict)
    section_figures: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    galleries: dict[tuple[str, str], str] = field(default_factory=dict)


def findings(tasks: pd.DataFrame, warnings: Optional[dict[tuple[str, str], list[str]]] = None) -> list[str]:
    """Plain-language statements derived from the per-task table, including negative results; the
    selection's own warnings (``neurons.json``) explain empty or small selections."""
    out = []
    warnings = warnings or {}
    for _, r in tasks.iterrows():
        head = f"{r['model']} on {r['task']}: {r['classes_covered']}/{r['classes']} classes have neurons " \
               f"({r['neurons_per_class']:.1f} per class)."
        why = warnings.get((r["model"], r["task"]), [])
        why_txt = (" Selection notes: " + "; ".join(why) + ".") if why else ""
        if r["classes_covered"] == 0:
            out.append(head + " No class-specific neuron was found, so nothing was ablated." + why_txt)
            continue
        on, rnd, off = r["mean_on_target_delta"], r["mean_random_delta"], r["mean_off_target_delta"]
        if math.isnan(rnd):
            verdict = "no matched random sets were evaluated"
        elif on < rnd - 0.05:
            verdict = (f"ablating a class's set lowers that class's recall by {-on:.3f} on average, against "
                       f"{-rnd:.3f} for matched random sets: the sets are class-specific")
        else:
            verdict = (f"NEGATIVE RESULT: ablating a class's set changes that class's recall by {on:+.3f} on "
                       f"average, not clearly more than matched random sets ({rnd:+.3f})")
        out.append(f"{head} Off-target classes change by {off:+.3f} on average; {verdict}.{why_txt}")
    return out


def write_summary_md(inp: ReportInputs) -> str:
    parts = ["# aape pipeline report", "", "## Headline per model and task", "", markdown_table(inp.tasks), ""]
    parts += ["## Findings", ""] + [f"- {s}" for s in inp.findings] + [""]
    parts += ["## Per class (recall change when the class's AAPE set is zeroed)", "",
              markdown_table(inp.headline), ""]
    if inp.probe is not None and len(inp.probe):
        parts += ["## Linear probe (test accuracy, clean features)", "", markdown_table(inp.probe), ""]
    if inp.galleries:
        parts += ["## Listening galleries", ""] + [f"- {m} on {t}: [{g}]({g})" for (m, t), g in inp.galleries.items()]
        parts += [""]
    parts += ["## Figures", ""] + [f"- [{f}]({f})" for f in inp.figures] + [""]
    parts += ["## Files", ""] + [f"- `{f}`" for f in inp.files] + [""]
    parts += ["## Manifests", ""]
    for k, m in inp.manifests.items():
        parts += [f"### {k}", "", "```json", json.dumps(m, indent=1, default=str), "```", ""]
    return "\n".join(parts)


def write_index_html(inp: ReportInputs) -> str:
    """``report/index.html`` (rendered by :func:`analysis.app.html.report_page`): the overview table, one
    section per model × task (its finding, per-class table, probe, figures inline, gallery link), figures
    spanning tasks, the files and the manifests."""
    fmt = lambda c, v: _fmt(v, _signed(c))  # noqa: E731
    placed = {f for figs in inp.section_figures.values() for f in figs}
    sections = []
    for i, (_, r) in enumerate(inp.tasks.iterrows()):
        key = (r["model"], r["task"])
        sec = ReportSection(model=str(key[0]), task=str(key[1]), findings=findings(inp.tasks.iloc[[i]], inp.notes))
        rows = inp.headline[(inp.headline["model"] == key[0]) & (inp.headline["task"] == key[1])]
        sec.tables.append(("Per class (recall change when the class's AAPE set is zeroed)",
                           html_table(rows.drop(columns=["model", "task"]), fmt)))
        if inp.probe is not None and len(inp.probe):
            pr = inp.probe[(inp.probe["model"] == key[0]) & (inp.probe["task"] == key[1])]
            if len(pr):
                sec.tables.append(("Linear probe", html_table(pr.drop(columns=["model", "task"]), fmt)))
        sec.figures = [(f, inp.previews.get(f)) for f in inp.section_figures.get(key, [])]
        if key in inp.galleries:
            sec.links.append((inp.galleries[key], f"listening gallery: what the neurons of {key[0]} listen to on "
                                                  f"{key[1]}"))
        sections.append(sec)
    other = [(f, inp.previews.get(f)) for f in inp.figures if f not in placed]
    return report_page(html_table(inp.tasks, fmt), sections, other, [], inp.files, inp.manifests)


def result_files(tree: OutputTree) -> list[str]:
    """Result files under the output root (relative, sorted), leaving out hidden folders (stage markers,
    staging), TensorBoard logs, the synthetic audio, the report folder itself and the galleries' media (their
    index pages are listed)."""
    files = []
    galleries = tree.root / GALLERY_DIR
    for p in tree.root.rglob("*"):
        rel = p.relative_to(tree.root)
        if (not p.is_file() or p.parent == tree.report or any(part.startswith(".") for part in rel.parts)
                or p.is_relative_to(tree.tensorboard) or p.is_relative_to(tree.synthetic_evar_root / "work")
                or (p.is_relative_to(galleries) and p.name != INDEX_HTML)):
            continue
        files.append(rel.as_posix())
    return sorted(files)


def write_summary(tree: OutputTree, models: Iterable[str], tasks: Iterable[str], overwrite: bool = False) -> list[Path]:
    """``report/summary.md``, ``report/index.html``, ``report/headline.csv`` and ``report/tasks.csv`` of
    a pipeline run, from the stage outputs of every (model, task). Returns the files written."""
    heads, abl, manifests, probes, notes = [], {}, {}, [], {}
    tasks = list(tasks)
    for model in models:
        for task in tasks:
            rd, csv = tree.run(task, model), tree.ablation(task, model) / ABLATION_CSV
            abl[(model, task)] = csv
            notes[(model, task)] = selection_warnings(rd)
            heads.append(headline_rows(model, task, rd, csv))
            manifests[str(rd.relative_to(tree.root))] = read_manifest(rd)
            pr = tree.probe(task, model) / PROBE_RESULTS
            if pr.exists():
                df = pd.read_csv(pr)
                df.insert(0, "task", task)
                df.insert(0, "model", model)
                probes.append(df)
    headline = pd.concat(heads, ignore_index=True)
    task_table = task_rows(headline, abl)
    files = result_files(tree)
    work = tree.synthetic_evar_root / "work"
    rel = lambda p: "../" + Path(p).relative_to(tree.root).as_posix()  # noqa: E731 - from report/
    figures = ["../" + f for f in files if f.endswith(".pdf")]
    previews = {f: rel(figure_preview(tree.root / f[3:])) for f in figures
                if figure_preview(tree.root / f[3:]).is_file()}
    section_figures, galleries = {}, {}
    for model, task in abl:
        mine = [rel(tree.model_report(model) / within_task_name(task))] + [
            f for f in figures if f.startswith(rel(tree.ablation(task, model)) + "/")]
        section_figures[(model, task)] = [f for f in mine if f in figures]
        if (tree.gallery(task, model) / INDEX_HTML).is_file():
            galleries[(model, task)] = rel(tree.gallery(task, model) / INDEX_HTML)
    inp = ReportInputs(tasks=task_table, headline=headline, findings=findings(task_table, notes),
                       figures=figures,
                       files=["../" + f for f in files]
                       + ([f"../{work.relative_to(tree.root).as_posix()}/"] if work.is_dir() else []),
                       manifests=manifests, probe=pd.concat(probes, ignore_index=True) if probes else None,
                       notes=notes, previews=previews, section_figures=section_figures, galleries=galleries)
    dest = tree.report
    return [save_csv(headline, dest / HEADLINE_CSV, overwrite=overwrite),
            save_csv(task_table, dest / TASKS_CSV, overwrite=overwrite),
            save_text(write_summary_md(inp), dest / SUMMARY_MD, overwrite=overwrite),
            save_text(write_index_html(inp), dest / INDEX_HTML, overwrite=overwrite)]
