"""``summary``: the verdicts and the human-readable report of a pipeline run (``report/summary.md``,
``report/index.html``, ``report/ablation_summary.csv``, ``report/tasks.csv``, ``report/threshold_free.csv``,
``report/reproduction.csv``).

Every number is computed from the stage outputs (:mod:`analysis.app.verdicts`: one row per ablated class
set with its exact test, correction and verdict; one row per model × task) and every sentence formats cells
of those rows (:mod:`analysis.app.claims`). ``summary.md`` is read in two minutes: it opens with one verdict
table for the run (task, model, probe accuracy [interval] vs chance, the specific sets with change
[interval] and adjusted p, stability), then one sentence per model × task, and links the CSVs and the web
report for everything else; it stays within :data:`MAX_SUMMARY_LINES` lines. The rules behind the word
*specific*: ``docs/findings.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote
from typing import Iterable, Mapping, Optional, Sequence

import pandas as pd

from analysis.app.claims import (
    AT_CHANCE,
    comparison_findings,
    findings,
    md_escape,
    run_findings,  # noqa: F401
    verdict_table,
)
from analysis.app.html import esc
from analysis.app.html import table as html_table
from analysis.app.report_page import ReportSection, report_page
from analysis.app.reproduction import reproduction_table
from analysis.app.tuning_report import steering_section, tuning_section
from analysis.app.task_verdicts import TASK_COLUMNS, task_rows
from analysis.app.verdicts import (
    HEADLINE_COLUMNS,
    THRESHOLD_FREE_COLUMNS,  # noqa: F401
    VERDICT_COLUMNS,
    apply_verdicts,
    headline_rows,
    neurons_per_class,
    threshold_free_rows,
    verdict_rows,
)
from analysis.figures import verdict_figure
from analysis.runs.atomic import save_csv, save_pdf, save_text
from analysis.runs.layout import (
    ABLATION_CSV,
    ABLATION_SUMMARY_CSV,
    GALLERY_DIR,
    INDEX_HTML,
    PROBE_RESULTS,
    REPRODUCTION_CSV,
    SUMMARY_MD,
    TASKS_CSV,
    THRESHOLD_FREE_CSV,
    VERDICTS_PDF,
    OutputTree,
    compare_table_name,
    figure_preview,
    within_task_name,
)
from analysis.runs.layout import NEURONS_VS_FEATURES_CSV, TUNING_RANGES_CSV
from analysis.runs.read import read_manifest, read_table, selection_warnings
from analysis.significance import ALPHA, Correction

#: ``summary.md`` longer than this is cut (the rest is in ``index.html`` and the CSVs).
MAX_SUMMARY_LINES = 150
#: Columns of the per-set table of the web report shown before "all columns" is unfolded.
SET_COLUMNS = [
    "class",
    "neurons",
    "on_target_delta",
    "change_lo",
    "change_hi",
    "random_draws",
    "random_delta_lo",
    "random_delta_hi",
    "p_value",
    "p_adjusted",
    "specific",
    "failed",
    "stability_mean_jaccard",
]


def _fmt(x: object, signed: bool = False, col: str = "") -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if "p_value" in col or "p_adjusted" in col or col == "smallest_p":
            return f"{x:.2g}"
        return f"{x:+.3f}" if signed else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def _signed(col: str) -> bool:
    return "delta" in col or col in ("difference", "change_lo", "change_hi")


def markdown_table(df: pd.DataFrame, columns: Optional[Sequence[str]] = None) -> str:
    """``df`` as a Markdown table; text cells are escaped (:func:`analysis.app.claims.md_escape`)."""
    cols = list(columns or df.columns)
    out = ["| " + " | ".join(md_escape(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(md_escape(_fmt(r[c], _signed(c), c)) for c in cols) + " |")
    return "\n".join(out)


@dataclass
class ReportInputs:
    """What the final report shows: the per-run table ``tasks`` and the per-set ``verdicts``, the findings
    (sentences of :mod:`analysis.app.claims`), figures and files (paths relative to the report folder),
    manifests (run folder → manifest dict), the selection's notes per (model, task), PNG previews of the PDF
    figures, the figures of each (model, task) and its gallery's index page; optionally the probe results,
    the threshold-free ablation, the models side by side (the ``compare`` stage's table) and the
    reproduction table (:func:`analysis.app.reproduction.reproduction_table`)."""

    tasks: pd.DataFrame
    verdicts: pd.DataFrame
    findings: list[str]
    figures: list[str]
    files: list[str]
    manifests: dict[str, dict]
    probe: Optional[pd.DataFrame] = None
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    previews: dict[str, str] = field(default_factory=dict)
    section_figures: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    galleries: dict[tuple[str, str], str] = field(default_factory=dict)
    threshold_free: Optional[pd.DataFrame] = None
    comparison: Optional[pd.DataFrame] = None
    reproduction: Optional[pd.DataFrame] = None
    neurons_vs_features: Optional[pd.DataFrame] = None
    #: further sections (title, markdown, HTML), e.g. the tuning curves' claims
    extra_sections: list[tuple[str, str, str]] = field(default_factory=list)


#: Heading and caption of the neurons-vs-features table (``compare/neurons_vs_features.csv``).
FEATURES_HEADING = "Neurons vs SAE features (per task and site)"
FEATURES_NOTE = (
    "One row per task, site and unit kind (`compare/neurons_vs_features.csv`): units of the site, "
    "units assigned to a class (specific_units), mean bootstrap Jaccard of the class sets "
    "(mean_jaccard), mean change of the targeted class's recall when its set is zeroed "
    "(mean_on_target_delta) and that change per unit ablated, on and off target, and the probe's test "
    "accuracy with its 95 % Wilson interval (probe_accuracy, _lo, _hi): of the original model on neuron "
    "rows, with the SAE's reconstruction in place of the site (its error term dropped) on feature rows. "
    "Neuron class sets come from the neuron model's selection over all its sites; see docs/features.md."
)


def _verdict_md(df: pd.DataFrame) -> str:
    """The verdict table, its cells already escaped text."""
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(out)


def write_summary_md(inp: ReportInputs, max_lines: int = MAX_SUMMARY_LINES) -> str:
    """``summary.md``: the verdict table first, then the test statement, one sentence per model × task,
    the comparison, and links to the details (cut to ``max_lines`` lines, saying so)."""
    head = [
        "# aape pipeline report",
        "",
        "## Verdicts",
        "",
        _verdict_md(verdict_table(inp.tasks, inp.verdicts)),
        "",
        "Specific = adjusted p < alpha, on-target change < 0 and the probe's interval above chance "
        "([how findings are tested](../docs/findings.md) if the repository is next to the outputs).",
        "",
    ]
    body = ["## Findings", ""] + [f"- {s}" for s in run_findings(inp.tasks, inp.verdicts) + inp.findings] + [""]
    if inp.neurons_vs_features is not None and len(inp.neurons_vs_features):
        cols = [
            c
            for c in (
                "task",
                "model",
                "site",
                "unit_kind",
                "units",
                "specific_units",
                "mean_jaccard",
                "mean_on_target_delta",
                "probe_accuracy",
                "probe_accuracy_lo",
                "probe_accuracy_hi",
            )
            if c in inp.neurons_vs_features.columns
        ]
        body += [f"## {FEATURES_HEADING}", "", FEATURES_NOTE, "", markdown_table(inp.neurons_vs_features, cols), ""]
    for title, md, _ in inp.extra_sections:
        body += [f"## {title}", "", md, ""]
    if inp.reproduction is not None and len(inp.reproduction):
        body += ["## Reproduction: our numbers next to the study's", "", markdown_table(inp.reproduction), ""]
    links = [
        "## Details",
        "",
        "- [index.html](index.html): the web report (per-set tables, figures, probe, manifests)",
        f"- [{ABLATION_SUMMARY_CSV}]({ABLATION_SUMMARY_CSV}): every ablated set with its test and verdict",
        f"- [{TASKS_CSV}]({TASKS_CSV}): every model × task ({len(TASK_COLUMNS)} columns)",
        f"- [{VERDICTS_PDF}]({VERDICTS_PDF}): every set's change with its interval, specific and unstable sets marked",
        f"- [{THRESHOLD_FREE_CSV}]({THRESHOLD_FREE_CSV}): the threshold-free lowest-entropy control",
    ]
    if inp.reproduction is not None and len(inp.reproduction):
        links.append(f"- [{REPRODUCTION_CSV}]({REPRODUCTION_CSV}): our numbers next to the study's")
    links += [
        f"- listening gallery, {md_escape(m)} on {md_escape(t)}: [{md_escape(g)}]({quote(g)})"
        for (m, t), g in inp.galleries.items()
    ]
    links += [""]
    room = max_lines - len("\n".join(head).splitlines()) - len(links) - 3  # the cut note (2) and a blank line
    lines = "\n".join(body).splitlines()
    if len(lines) > room:
        lines = lines[:room] + ["", "(cut to fit; every finding is in index.html)"]
    return "\n".join(head + lines + [""] + links)


def _set_tables(rows: pd.DataFrame, fmt) -> str:
    """The per-set verdict columns, the full columns one click away."""
    short = [c for c in SET_COLUMNS if c in rows.columns]
    full = rows.drop(columns=[c for c in ("model", "task") if c in rows.columns])
    return (
        html_table(rows[short], fmt) + "<details><summary>all columns</summary>" + html_table(full, fmt) + "</details>"
    )


def write_index_html(inp: ReportInputs) -> str:
    """``report/index.html`` (rendered by :func:`analysis.app.report_page.report_page`): the verdict table with words
    for headers (the full ``tasks.csv`` columns one click away), one section per model × task (its finding,
    its sets' verdicts, probe, figures inline, gallery link), figures spanning tasks, the files and the
    manifests."""
    fmt = lambda c, v: _fmt(v, _signed(c), c)  # noqa: E731
    placed = {f for figs in inp.section_figures.values() for f in figs}
    sections = []
    for i, (_, r) in enumerate(inp.tasks.iterrows()):
        key = (r["model"], r["task"])
        sec = ReportSection(
            model=str(key[0]),
            task=str(key[1]),
            findings=findings(inp.tasks.iloc[[i]], inp.verdicts, inp.notes, escape=str),
        )
        rows = inp.verdicts[(inp.verdicts["model"] == key[0]) & (inp.verdicts["task"] == key[1])]
        aape = rows[rows["selector"] == "aape"]
        sec.tables.append(("AAPE sets: change of the class's recall when its set is zeroed", _set_tables(aape, fmt)))
        others = rows[rows["selector"] != "aape"]
        if len(others):
            sec.tables.append(
                (
                    "Baseline selectors (same set sizes, same ablation, same test)",
                    html_table(others[["selector", *[c for c in SET_COLUMNS if c != "stability_mean_jaccard"]]], fmt),
                )
            )
        if inp.probe is not None and len(inp.probe):
            pr = inp.probe[(inp.probe["model"] == key[0]) & (inp.probe["task"] == key[1])]
            if len(pr):
                sec.tables.append(
                    ("Linear probe (one row per seed)", html_table(pr.drop(columns=["model", "task"]), fmt))
                )
        sec.figures = [(f, inp.previews.get(f)) for f in inp.section_figures.get(key, [])]
        if key in inp.galleries:
            sec.links.append(
                (inp.galleries[key], f"listening gallery: what the neurons of {key[0]} listen to on {key[1]}")
            )
        sections.append(sec)
    other = [(f, inp.previews.get(f)) for f in inp.figures if f not in placed]
    extra = [("How the sets were tested", "".join(f"<p>{esc(s)}</p>" for s in run_findings(inp.tasks, inp.verdicts)))]
    if inp.threshold_free is not None and len(inp.threshold_free):
        extra.append(
            ("Threshold-free: each class's k lowest-entropy neurons zeroed", html_table(inp.threshold_free, fmt))
        )
    if inp.comparison is not None and len(inp.comparison):
        sentences = "".join(f"<p>{esc(f)}</p>" for f in comparison_findings(inp.tasks, escape=str))
        extra.append(("Models side by side", sentences + html_table(inp.comparison, fmt)))
    if inp.neurons_vs_features is not None and len(inp.neurons_vs_features):
        extra.append((FEATURES_HEADING, f"<p>{esc(FEATURES_NOTE)}</p>" + html_table(inp.neurons_vs_features, fmt)))
    if inp.reproduction is not None and len(inp.reproduction):
        extra.append(("Reproduction: our numbers next to the study's", html_table(inp.reproduction, fmt)))
    extra += [(title, content) for title, _, content in inp.extra_sections]
    overview = (
        html_table(verdict_table(inp.tasks, inp.verdicts, escape=str), sortable=False)
        + "<details><summary>all columns of tasks.csv</summary>"
        + html_table(inp.tasks, fmt)
        + "</details>"
    )
    return report_page(overview, sections, other, extra, inp.files, inp.manifests)


def result_files(tree: OutputTree) -> list[str]:
    """Result files under the output root (relative, sorted), leaving out hidden folders (stage markers,
    staging), TensorBoard logs, the synthetic audio, the report folder itself and the galleries' media (their
    index pages are listed)."""
    files = []
    galleries = tree.root / GALLERY_DIR
    for p in tree.root.rglob("*"):
        rel = p.relative_to(tree.root)
        if (
            not p.is_file()
            or p.parent == tree.report
            or any(part.startswith(".") for part in rel.parts)
            or p.is_relative_to(tree.tensorboard)
            or p.is_relative_to(tree.synthetic_evar_root / "work")
            or p.is_relative_to(tree.stimuli / "work")
            or (p.is_relative_to(galleries) and p.name != INDEX_HTML)
        ):
            continue
        files.append(rel.as_posix())
    return sorted(files)


def write_summary(
    tree: OutputTree,
    models: Iterable[str],
    tasks: Iterable[str] | Mapping[str, dict],
    overwrite: bool = False,
    alpha: float = ALPHA,
    correction: Correction = "holm",
) -> list[Path]:
    """``report/summary.md``, ``report/index.html``, ``report/ablation_summary.csv``, ``report/tasks.csv``,
    ``report/threshold_free.csv`` and ``report/reproduction.csv`` of a pipeline run, from the stage outputs
    of every (model, task). ``tasks``: task names, or the pipeline's task options (their ``class_aliases``
    name the study's classes in the reproduction table). ``alpha``: the level of the word *specific*;
    ``correction``: ``holm`` (family-wise, default) or ``bh`` (Benjamini–Hochberg), over every test of the
    run. Returns the files written."""
    sets, free, abl, runs, manifests, probes, notes = [], [], {}, {}, {}, {}, {}
    models = list(models)
    aliases = {t: dict(o.get("class_aliases") or {}) for t, o in tasks.items()} if isinstance(tasks, Mapping) else {}
    tasks = list(tasks)
    for task in tasks:
        for model in models:
            rd, csv = tree.run(task, model), tree.ablation(task, model) / ABLATION_CSV
            abl[(model, task)], runs[(model, task)] = csv, rd
            notes[(model, task)] = selection_warnings(rd)
            sets.append(verdict_rows(model, task, rd, csv))
            free.append(threshold_free_rows(model, task, csv))
            manifests[str(rd.relative_to(tree.root))] = read_manifest(rd)
            pr = tree.probe(task, model) / PROBE_RESULTS
            if pr.exists():
                probes[(model, task)] = pd.read_csv(pr)
    verdicts = apply_verdicts(pd.concat(sets, ignore_index=True), alpha, correction)
    threshold_free = pd.concat(free, ignore_index=True)
    task_table = task_rows(verdicts, abl, runs, threshold_free, alpha, correction, probes)
    reproduction = reproduction_table(task_table, {k: v.parent for k, v in abl.items()}, aliases)
    compare_csv = tree.compare / compare_table_name(models)
    files = result_files(tree)
    work = tree.synthetic_evar_root / "work"
    rel = lambda p: "../" + Path(p).relative_to(tree.root).as_posix()  # noqa: E731 - from report/
    figures = ["../" + f for f in files if f.endswith(".pdf")]
    previews = {
        f: rel(figure_preview(tree.root / f[3:])) for f in figures if figure_preview(tree.root / f[3:]).is_file()
    }
    section_figures, galleries = {}, {}
    for model, task in abl:
        mine = [rel(tree.model_report(model) / within_task_name(task))] + [
            f for f in figures if f.startswith(rel(tree.ablation(task, model)) + "/")
        ]
        section_figures[(model, task)] = [f for f in mine if f in figures]
        if (tree.gallery(task, model) / INDEX_HTML).is_file():
            galleries[(model, task)] = rel(tree.gallery(task, model) / INDEX_HTML)
    dest = tree.report
    aape_sets = verdicts[verdicts["selector"] == "aape"]
    written = [save_pdf(verdict_figure(aape_sets), dest / VERDICTS_PDF, overwrite=overwrite)] if len(aape_sets) else []
    if written:
        figures = [VERDICTS_PDF, *figures]
        previews[VERDICTS_PDF] = figure_preview(written[0]).name
    probe_table = None
    if probes:
        probe_table = pd.concat(
            [df.assign(model=m, task=t)[["model", "task", *df.columns]] for (m, t), df in probes.items()],
            ignore_index=True,
        )
    inp = ReportInputs(
        tasks=task_table,
        verdicts=verdicts,
        findings=findings(task_table, verdicts, notes) + comparison_findings(task_table),
        figures=figures,
        files=["../" + f for f in files] + ([f"../{work.relative_to(tree.root).as_posix()}/"] if work.is_dir() else []),
        manifests=manifests,
        probe=probe_table,
        notes=notes,
        previews=previews,
        section_figures=section_figures,
        galleries=galleries,
        threshold_free=threshold_free,
        comparison=read_table(compare_csv) if len(models) >= 2 and compare_csv.is_file() else None,
        reproduction=reproduction,
        neurons_vs_features=read_table(tree.compare / NEURONS_VS_FEATURES_CSV)
        if (tree.compare / NEURONS_VS_FEATURES_CSV).is_file()
        else None,
    )
    tuning = tuning_section(tree, models)
    if tuning is not None:
        inp.extra_sections.append(("Tuning curves: preferred values of each class's units", tuning[1], tuning[2]))
        written.append(save_csv(tuning[0], dest / TUNING_RANGES_CSV, overwrite=overwrite))
    steering = steering_section(tree, models)
    if steering is not None:
        inp.extra_sections.append(("Steering: each class set scaled by a gain", *steering))
    return written + [
        save_csv(verdicts, dest / ABLATION_SUMMARY_CSV, overwrite=overwrite),
        save_csv(task_table, dest / TASKS_CSV, overwrite=overwrite),
        save_csv(threshold_free, dest / THRESHOLD_FREE_CSV, overwrite=overwrite),
        save_csv(reproduction, dest / REPRODUCTION_CSV, overwrite=overwrite),
        save_text(write_summary_md(inp), dest / SUMMARY_MD, overwrite=overwrite),
        save_text(write_index_html(inp), dest / INDEX_HTML, overwrite=overwrite),
    ]
