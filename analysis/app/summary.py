"""``summary``: the headline tables and the human-readable report of a pipeline run (``report/summary.md``,
``report/index.html``, ``report/headline.csv``, ``report/tasks.csv``, ``report/threshold_free.csv``,
``report/reproduction.csv``).

Every number here is computed from the stage outputs (``neurons.pt``/``classes.txt``/``over_zero.pt``/
``stability.csv`` of the statistics run folder, ``ablation.csv``/``ablation_conditions.json`` of the ablation
stage, the comparison table of the ``compare`` stage), never typed: :func:`headline_rows` is a plain
function of those files, and the tests recompute it from them. Every claim of :func:`findings` follows from
a rule of :mod:`analysis.significance`:

* a class's set is called **specific** only when zeroing it lowers the class's recall strictly below the
  95 % interval of its size- and layer-matched random draws (with fewer than
  :data:`~analysis.significance.COARSE_DRAWS` draws the report says the interval is coarse);
* when the clean probe is not above chance on the test split (one-sided exact binomial test against the
  larger of 1/C and the majority rate, :data:`~analysis.significance.ALPHA`), every ablation claim of that
  model × task is replaced by "the probe is at chance level: ablation effects are not interpretable";
* each set's bootstrap stability (``stability.csv``: mean Jaccard and its 95 % interval) is stated, and a
  set with mean Jaccard below :data:`~analysis.significance.UNSTABLE_JACCARD` is called unstable;
* the threshold-free view: quantiles of the normalised entropy of all neurons, and the ``lowent``
  ablation of each class's k lowest-entropy neurons against matched random sets.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import pandas as pd

from analysis.ablation import ALL_CLASSES as ALL
from analysis.draws import matched_draws
from analysis.app.html import ReportSection, esc, report_page
from analysis.app.html import table as html_table
from analysis.app.report import entropy_quantiles
from analysis.app.reproduction import reproduction_table
from analysis.app.tuning_report import steering_section, tuning_section
from analysis.runs.atomic import save_csv, save_text
from analysis.runs.layout import (ABLATION_CSV, GALLERY_DIR, HEADLINE_CSV, INDEX_HTML, PROBE_RESULTS, REPRODUCTION_CSV,
                                  SUMMARY_MD, TASKS_CSV, THRESHOLD_FREE_CSV, OutputTree, compare_table_name,
                                  figure_preview, within_task_name)
from analysis.runs.layout import TUNING_RANGES_CSV
from analysis.runs.read import (read_ablation_conditions, read_classes, read_manifest, read_neurons, read_over_zero,
                                read_stability, read_table, selection_warnings)
from analysis.significance import (COARSE_DRAWS, LEVEL, UNSTABLE_JACCARD, below_interval, chance_rate,
                                   empirical_interval, probe_above_chance)

HEADLINE_COLUMNS = [
    "model", "task", "class", "neurons", "on_target_delta", "random_delta_mean", "random_delta_lo",
    "random_delta_hi", "random_draws", "specific", "off_target_delta_mean", "baseline_recall",
    "stability_mean_jaccard", "stability_jaccard_lo", "stability_jaccard_hi",
]
THRESHOLD_FREE_COLUMNS = ["model", "task", "class", "k", "on_target_delta", "random_delta_mean", "random_delta_lo",
                          "random_delta_hi", "random_draws", "below_random"]
TASK_COLUMNS = ["model", "task", "classes", "classes_covered", "neurons_per_class", "selected_neurons",
                "baseline_accuracy", "test_clips", "chance_rate", "probe_p_value", "probe_above_chance",
                "classes_specific", "random_draws", "mean_on_target_delta", "mean_random_delta",
                "mean_off_target_delta", "mean_stability_jaccard", "unstable_sets", "entropy_q01", "entropy_q05",
                "entropy_q25", "entropy_q50", "dead_neurons", "lowent_k", "lowent_classes",
                "lowent_random_draws", "lowent_classes_below_random", "lowent_mean_delta", "lowent_mean_random_delta"]
#: Columns of the task table shown in summary.md (tasks.csv has all).
TASK_MD_COLUMNS = ["model", "task", "classes", "classes_covered", "neurons_per_class", "baseline_accuracy",
                   "chance_rate", "probe_p_value", "classes_specific", "random_draws", "mean_on_target_delta",
                   "mean_random_delta", "mean_stability_jaccard", "entropy_q05", "entropy_q50"]
#: The phrase that replaces every ablation claim of a probe at chance level.
AT_CHANCE = "the probe is at chance level: ablation effects are not interpretable"


def neurons_per_class(run_dir: str | Path) -> dict[str, int]:
    """Class name → number of (layer, neuron) pairs assigned to it in ``neurons.pt``."""
    classes = read_classes(run_dir)
    sets = read_neurons(run_dir, len(classes), read_over_zero(run_dir).shape[0])
    return {c: int(sum(int(t.numel()) for t in layers)) for c, layers in zip(classes, sets)}


def _conditions(ablation_csv: str | Path) -> Optional[list[dict]]:
    """The condition descriptions of ``ablation_conditions.json`` beside ``ablation_csv`` (None without)."""
    try:
        return read_ablation_conditions(Path(ablation_csv).parent)["conditions"]
    except FileNotFoundError:
        return None


def _random_deltas(t: pd.DataFrame, parent: str, cls: str, conditions: Optional[list[dict]] = None) -> list[float]:
    """Deltas of class ``cls`` under the matched random draws of condition ``parent``, in draw order
    (:func:`analysis.draws.matched_draws`; without the conditions file: the draws named ``random:<parent>:``)."""
    if conditions is not None and any(c.get("name") == parent for c in conditions):
        names = [c["name"] for c in matched_draws(conditions, parent)]
        own = t[(t["class"] == cls) & t["condition"].isin(names)].set_index("condition")["delta"]
        return [float(own[n]) for n in names if n in own.index]
    rnd = t[(t["kind"] == "random") & t["condition"].str.startswith(f"random:{parent}:") & (t["class"] == cls)]
    return rnd["delta"].astype(float).tolist()


def _stability(run_dir: str | Path) -> dict[str, tuple[float, float, float]]:
    st = read_stability(run_dir)
    if st is None:
        return {}
    return {str(r["class"]): (float(r["mean_jaccard"]), float(r["jaccard_low"]), float(r["jaccard_high"]))
            for _, r in st.iterrows()}


def headline_rows(model: str, task: str, run_dir: str | Path, ablation_csv: str | Path) -> pd.DataFrame:
    """One row per class of ``task``: the size of its AAPE set, the change in its own recall when the set
    is ablated (``on_target_delta``), the same for size- and layer-matched random sets (mean and central
    95% interval over draws), ``specific`` (the on-target change lies below that interval), the mean change
    of the other classes (``off_target_delta_mean``) and the set's bootstrap stability from
    ``stability.csv`` (mean Jaccard and its 95 % interval; NaN without the file). Classes without neurons
    get NaN deltas (nothing was ablated)."""
    counts = neurons_per_class(run_dir)
    stability = _stability(run_dir)
    t = read_table(ablation_csv)
    conds = _conditions(ablation_csv)
    base = t[t["kind"] == "baseline"].set_index("class")["accuracy"]
    rows = []
    for c, n in counts.items():
        cond = f"class:{c}"
        own = t[(t["condition"] == cond)]
        on = own[own["class"] == c]["delta"]
        off = own[(own["class"] != c) & (own["class"] != ALL)]["delta"]
        d = _random_deltas(t, cond, c, conds)
        lo, hi = empirical_interval(d, LEVEL)
        on_delta = float(on.iloc[0]) if len(on) else math.nan
        jac = stability.get(c, (math.nan, math.nan, math.nan))
        rows.append(dict(
            model=model, task=task, **{"class": c}, neurons=n, on_target_delta=on_delta,
            random_delta_mean=float(sum(d) / len(d)) if d else math.nan,
            random_delta_lo=lo, random_delta_hi=hi, random_draws=len(d), specific=below_interval(on_delta, lo),
            off_target_delta_mean=float(off.mean()) if len(off) else math.nan,
            baseline_recall=float(base.get(c, math.nan)),
            stability_mean_jaccard=jac[0] if n else math.nan, stability_jaccard_lo=jac[1] if n else math.nan,
            stability_jaccard_hi=jac[2] if n else math.nan,
        ))
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def threshold_free_rows(model: str, task: str, ablation_csv: str | Path) -> pd.DataFrame:
    """One row per ``lowent:<c>:<k>`` condition of ``ablation.csv``: the change of class c's recall when its
    k lowest-entropy neurons are zeroed, the same for the matched random draws (mean, 95 % interval) and
    ``below_random`` (the change lies below that interval). Empty without such conditions."""
    t = read_table(ablation_csv)
    conds = _conditions(ablation_csv)
    rows = []
    for cond in dict.fromkeys(t.loc[t["kind"] == "lowent", "condition"]):
        _, c, k = cond.rsplit(":", 2)
        on = t[(t["condition"] == cond) & (t["class"] == c)]["delta"]
        on_delta = float(on.iloc[0]) if len(on) else math.nan
        d = _random_deltas(t, cond, c, conds)
        lo, hi = empirical_interval(d, LEVEL)
        rows.append(dict(model=model, task=task, **{"class": c}, k=int(k), on_target_delta=on_delta,
                         random_delta_mean=float(sum(d) / len(d)) if d else math.nan, random_delta_lo=lo,
                         random_delta_hi=hi, random_draws=len(d), below_random=below_interval(on_delta, lo)))
    return pd.DataFrame(rows, columns=THRESHOLD_FREE_COLUMNS)


def _mean(x: pd.Series) -> float:
    x = pd.to_numeric(x, errors="coerce").dropna()
    return float(x.mean()) if len(x) else math.nan


def _probe_test(t: pd.DataFrame) -> dict[str, object]:
    """Baseline accuracy on the test split, its chance rate and the binomial test (from ablation.csv)."""
    base = t[t["kind"] == "baseline"]
    everything = base[base["class"] == ALL]
    per_class = base[base["class"] != ALL]["n"].astype(int).tolist()
    if everything.empty or not sum(per_class):
        return dict(baseline_accuracy=math.nan, test_clips=0, chance_rate=math.nan, probe_p_value=math.nan,
                    probe_above_chance=False)
    n, correct = int(everything["n"].iloc[0]), int(everything["correct"].iloc[0])
    chance = chance_rate(per_class)
    above, p = probe_above_chance(correct, n, chance)
    return dict(baseline_accuracy=float(everything["accuracy"].iloc[0]), test_clips=n, chance_rate=chance,
                probe_p_value=p, probe_above_chance=above)


def task_rows(headline: pd.DataFrame, ablation: Mapping[tuple[str, str], str | Path],
              runs: Optional[Mapping[tuple[str, str], str | Path]] = None,
              threshold_free: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per (model, task), aggregated from :func:`headline_rows` (means over covered classes), with
    the probe's test against chance, the entropy quantiles of all neurons of the run folder (``runs``) and
    the threshold-free ablation at its largest k (``threshold_free``)."""
    rows = []
    runs = runs or {}
    tf = threshold_free if threshold_free is not None else pd.DataFrame(columns=THRESHOLD_FREE_COLUMNS)
    for (model, task), g in headline.groupby(["model", "task"], sort=False):
        t = read_table(ablation[(model, task)])
        covered = g[g["neurons"] > 0]
        ent = entropy_quantiles(read_over_zero(runs[(model, task)])) if (model, task) in runs else {}
        own = tf[(tf["model"] == model) & (tf["task"] == task)]
        k = int(own["k"].max()) if len(own) else math.nan
        at_k = own[own["k"] == k]
        jac = covered["stability_mean_jaccard"].astype(float)
        rows.append(dict(
            model=model, task=task, classes=len(g), classes_covered=len(covered),
            neurons_per_class=float(g["neurons"].mean()), selected_neurons=int(g["neurons"].sum()),
            **_probe_test(t),
            classes_specific=int(covered["specific"].astype(bool).sum()),
            random_draws=int(covered["random_draws"].max()) if len(covered) else 0,
            mean_on_target_delta=_mean(covered["on_target_delta"]),
            mean_random_delta=_mean(covered["random_delta_mean"]),
            mean_off_target_delta=_mean(covered["off_target_delta_mean"]),
            mean_stability_jaccard=_mean(jac), unstable_sets=int((jac < UNSTABLE_JACCARD).sum()),
            **{key: ent.get(key, math.nan) for key in ("entropy_q01", "entropy_q05", "entropy_q25", "entropy_q50",
                                                        "dead_neurons")},
            lowent_k=k, lowent_classes=len(at_k),
            lowent_random_draws=int(at_k["random_draws"].max()) if len(at_k) else 0,
            lowent_classes_below_random=int(at_k["below_random"].astype(bool).sum()),
            lowent_mean_delta=_mean(at_k["on_target_delta"]), lowent_mean_random_delta=_mean(at_k["random_delta_mean"]),
        ))
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def _fmt(x: object, signed: bool = False, col: str = "") -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if "p_value" in col:
            return f"{x:.2g}"
        return f"{x:+.3f}" if signed else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def _signed(col: str) -> bool:
    return "delta" in col or col == "difference"


def markdown_table(df: pd.DataFrame, columns: Optional[Sequence[str]] = None) -> str:
    cols = list(columns or df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(_fmt(r[c], _signed(c), c) for c in cols) + " |")
    return "\n".join(out)


@dataclass
class ReportInputs:
    """What the final report shows: tables, findings (plain sentences computed from the tables),
    figures and files (paths relative to the report folder), manifests (run folder → manifest dict), the
    selection's notes per (model, task), PNG previews of the PDF figures, the figures of each (model, task)
    and its gallery's index page; optionally the threshold-free ablation (:func:`threshold_free_rows`), the
    models side by side (the ``compare`` stage's table) and the reproduction table
    (:func:`analysis.app.reproduction.reproduction_table`)."""

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
    threshold_free: Optional[pd.DataFrame] = None
    comparison: Optional[pd.DataFrame] = None
    reproduction: Optional[pd.DataFrame] = None
    #: further sections (title, markdown, HTML), e.g. the tuning curves' claims
    extra_sections: list[tuple[str, str, str]] = field(default_factory=list)


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]"


def _stability_txt(r: pd.Series) -> str:
    m = r["stability_mean_jaccard"]
    if math.isnan(m):
        return "stability not measured"
    txt = f"set stability mean Jaccard {m:.2f} [{r['stability_jaccard_lo']:.2f}, {r['stability_jaccard_hi']:.2f}]"
    return txt + (", unstable" if m < UNSTABLE_JACCARD else "")


def _class_txt(r: pd.Series) -> str:
    return (f"{r['class']} ({r['on_target_delta']:+.3f} vs random {_interval(r['random_delta_lo'], r['random_delta_hi'])}"
            f"; {_stability_txt(r)})")


def _coarse(draws: int) -> str:
    return (f" With {draws} random draws per set the 95 % interval is coarse (fewer than {COARSE_DRAWS} draws)."
            if 0 < draws < COARSE_DRAWS else "")


def _probe_txt(r: pd.Series) -> str:
    return (f"test accuracy {r['baseline_accuracy']:.3f} on {r['test_clips']} clips vs chance "
            f"{r['chance_rate']:.3f}, one-sided binomial p = {r['probe_p_value']:.2g}")


def _entropy_txt(r: pd.Series) -> str:
    if math.isnan(r["entropy_q50"]):
        return ""
    return (f" Threshold-free view: the normalised entropy of its neurons has 5 % quantile {r['entropy_q05']:.3f} "
            f"and median {r['entropy_q50']:.3f} ({r['dead_neurons']} neurons never fire).")


def _threshold_free_txt(r: pd.Series) -> str:
    if not r["lowent_classes"]:
        return ""
    return (f" Zeroing each class's k={r['lowent_k']} lowest-entropy neurons (no threshold) lowers its recall below "
            f"the 95 % interval of its {r['lowent_random_draws']} matched random sets for "
            f"{r['lowent_classes_below_random']} of {r['lowent_classes']} classes (mean change "
            f"{r['lowent_mean_delta']:+.3f} vs {r['lowent_mean_random_delta']:+.3f} for the random sets)."
            + _coarse(int(r["lowent_random_draws"])))


def _ablation_claims(r: pd.Series, g: pd.DataFrame) -> str:
    """The sentences about the class sets' ablation of one model × task (probe above chance)."""
    covered = g[g["neurons"] > 0]
    draws = int(r["random_draws"])
    if draws == 0:
        return " No matched random sets were evaluated, so no set is called specific."
    spec = covered[covered["specific"].astype(bool)]
    rest = covered[~covered["specific"].astype(bool)]
    txt = (f" {len(spec)} of {len(covered)} covered classes have a set called specific (zeroing it lowers the "
           f"class's recall below the 95 % interval of its {draws} size- and layer-matched random sets)")
    txt += (": " + "; ".join(_class_txt(x) for _, x in spec.iterrows()) + ".") if len(spec) else "."
    if len(spec) == 0:
        txt += " NEGATIVE RESULT: no class's set lowers its recall more than matched random sets do."
    if len(rest):
        txt += (" Not specific: " + ", ".join(f"{x['class']} ({x['on_target_delta']:+.3f} vs "
                                               f"{_interval(x['random_delta_lo'], x['random_delta_hi'])})"
                                               for _, x in rest.iterrows()) + ".")
    txt += _coarse(draws)
    txt += f" Off-target classes change by {r['mean_off_target_delta']:+.3f} on average."
    jac = covered["stability_mean_jaccard"].astype(float)
    if jac.notna().any():
        unstable = covered[jac < UNSTABLE_JACCARD]["class"].tolist()
        txt += (f" Bootstrap stability of the sets (stability.csv): mean Jaccard {jac.mean():.2f} over covered "
                f"classes; " + (f"unstable (mean Jaccard < {UNSTABLE_JACCARD}): {', '.join(unstable)}."
                                if unstable else "no set is unstable."))
    else:
        txt += " Set stability was not measured (no stability.csv)."
    return txt


def findings(tasks: pd.DataFrame, headline: Optional[pd.DataFrame] = None,
             warnings: Optional[dict[tuple[str, str], list[str]]] = None) -> list[str]:
    """Plain-language statements per model × task, each following from the rules of the module docstring
    (per-class intervals, probe vs chance, stability, threshold-free view), including negative results; the
    selection's own warnings (``neurons.json``) explain empty or small selections."""
    out = []
    warnings = warnings or {}
    headline = headline if headline is not None else pd.DataFrame(columns=HEADLINE_COLUMNS)
    for _, r in tasks.iterrows():
        g = headline[(headline["model"] == r["model"]) & (headline["task"] == r["task"])]
        head = f"{r['model']} on {r['task']}: {r['classes_covered']}/{r['classes']} classes have neurons " \
               f"({r['neurons_per_class']:.1f} per class)."
        why = warnings.get((r["model"], r["task"]), [])
        why_txt = (" Selection notes: " + "; ".join(why) + ".") if why else ""
        probe = f" Probe: {_probe_txt(r)}." if r["test_clips"] else ""
        if r["test_clips"] and not r["probe_above_chance"]:
            out.append(f"{head}{probe} For this model and task, {AT_CHANCE}.{why_txt}{_entropy_txt(r)}")
            continue
        if r["classes_covered"] == 0:
            body = " No class-specific neuron was found, so no class set was ablated."
        else:
            body = _ablation_claims(r, g)
        out.append(f"{head}{probe}{body}{why_txt}{_entropy_txt(r)}{_threshold_free_txt(r)}")
    return out


def comparison_findings(tasks: pd.DataFrame) -> list[str]:
    """With two or more models: per task, the models' coverage, neurons per class, entropy quantiles of
    all neurons and threshold-free ablation side by side."""
    models = list(dict.fromkeys(tasks["model"]))
    if len(models) < 2:
        return []
    out = []
    for task, g in tasks.groupby("task", sort=False):
        g = g.set_index("model")
        ms = [m for m in models if m in g.index]
        if len(ms) < 2:
            continue
        parts = [f"{m} covers {g.loc[m, 'classes_covered']}/{g.loc[m, 'classes']} classes with "
                 f"{g.loc[m, 'neurons_per_class']:.1f} neurons per class" for m in ms]
        txt = f"Comparison on {task}: " + "; ".join(parts) + "."
        a, b = g.loc[ms[0], "neurons_per_class"], g.loc[ms[1], "neurons_per_class"]
        if b > 0:
            txt += f" {ms[0]} has {a / b:.2f} times the neurons per class of {ms[1]}."
        if g.loc[ms, "entropy_q50"].notna().all():
            txt += (" Normalised entropy of all neurons (no threshold), 5 % quantile / median: "
                    + "; ".join(f"{m} {g.loc[m, 'entropy_q05']:.3f} / {g.loc[m, 'entropy_q50']:.3f}" for m in ms) + ".")
        tf = [m for m in ms if g.loc[m, "lowent_classes"]]
        if tf:
            txt += (" Zeroing each class's lowest-entropy neurons lowers its recall below the random interval for "
                    + "; ".join(f"{m}: {g.loc[m, 'lowent_classes_below_random']} of {g.loc[m, 'lowent_classes']} "
                                f"classes (k={g.loc[m, 'lowent_k']}"
                                + ("" if g.loc[m, "probe_above_chance"] else f"; {AT_CHANCE}") + ")" for m in tf) + ".")
        out.append(txt)
    return out


def write_summary_md(inp: ReportInputs) -> str:
    parts = ["# aape pipeline report", "", "## Headline per model and task", "",
             markdown_table(inp.tasks, [c for c in TASK_MD_COLUMNS if c in inp.tasks.columns]), "",
             "(all columns: `tasks.csv`)", ""]
    parts += ["## Findings", ""] + [f"- {s}" for s in inp.findings] + [""]
    parts += ["## Per class (recall change when the class's AAPE set is zeroed)", "",
              markdown_table(inp.headline), ""]
    if inp.threshold_free is not None and len(inp.threshold_free):
        parts += ["## Threshold-free: each class's k lowest-entropy neurons zeroed", "",
                  markdown_table(inp.threshold_free), ""]
    if inp.comparison is not None and len(inp.comparison):
        parts += ["## Models side by side", "", markdown_table(inp.comparison), ""]
    if inp.reproduction is not None and len(inp.reproduction):
        parts += ["## Reproduction: our numbers next to the study's", "", markdown_table(inp.reproduction), "",
                  "(`ablation_delta_pt`: change of the class's recall in percentage points when the published "
                  "neuron list is zeroed; `shared_neurons`: size of our A ∩ B set vs the published list)", ""]
    if inp.probe is not None and len(inp.probe):
        parts += ["## Linear probe (test accuracy, clean features)", "", markdown_table(inp.probe), ""]
    if inp.galleries:
        parts += ["## Listening galleries", ""] + [f"- {m} on {t}: [{g}]({g})" for (m, t), g in inp.galleries.items()]
        parts += [""]
    for title, md, _ in inp.extra_sections:
        parts += [f"## {title}", "", md, ""]
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
    fmt = lambda c, v: _fmt(v, _signed(c), c)  # noqa: E731
    placed = {f for figs in inp.section_figures.values() for f in figs}
    sections = []
    for i, (_, r) in enumerate(inp.tasks.iterrows()):
        key = (r["model"], r["task"])
        sec = ReportSection(model=str(key[0]), task=str(key[1]),
                            findings=findings(inp.tasks.iloc[[i]], inp.headline, inp.notes))
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
    extra = []
    if inp.threshold_free is not None and len(inp.threshold_free):
        extra.append(("Threshold-free: each class's k lowest-entropy neurons zeroed", html_table(inp.threshold_free, fmt)))
    if inp.comparison is not None and len(inp.comparison):
        sentences = "".join(f"<p>{esc(f)}</p>" for f in comparison_findings(inp.tasks))
        extra.append(("Models side by side", sentences + html_table(inp.comparison, fmt)))
    if inp.reproduction is not None and len(inp.reproduction):
        extra.append(("Reproduction: our numbers next to the study's", html_table(inp.reproduction, fmt)))
    extra += [(title, content) for title, _, content in inp.extra_sections]
    overview = inp.tasks[[c for c in TASK_MD_COLUMNS if c in inp.tasks.columns]]
    return report_page(html_table(overview, fmt), sections, other, extra, inp.files, inp.manifests)


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
                or p.is_relative_to(tree.stimuli / "work")
                or (p.is_relative_to(galleries) and p.name != INDEX_HTML)):
            continue
        files.append(rel.as_posix())
    return sorted(files)


def write_summary(tree: OutputTree, models: Iterable[str], tasks: Iterable[str] | Mapping[str, dict],
                  overwrite: bool = False) -> list[Path]:
    """``report/summary.md``, ``report/index.html``, ``report/headline.csv``, ``report/tasks.csv``,
    ``report/threshold_free.csv`` and ``report/reproduction.csv`` of a pipeline run, from the stage outputs
    of every (model, task). ``tasks``: task names, or the pipeline's task options (their ``class_aliases``
    name the study's classes in the reproduction table). Returns the files written."""
    heads, free, abl, runs, manifests, probes, notes = [], [], {}, {}, {}, [], {}
    models = list(models)
    aliases = {t: dict(o.get("class_aliases") or {}) for t, o in tasks.items()} if isinstance(tasks, Mapping) else {}
    tasks = list(tasks)
    for model in models:
        for task in tasks:
            rd, csv = tree.run(task, model), tree.ablation(task, model) / ABLATION_CSV
            abl[(model, task)], runs[(model, task)] = csv, rd
            notes[(model, task)] = selection_warnings(rd)
            heads.append(headline_rows(model, task, rd, csv))
            free.append(threshold_free_rows(model, task, csv))
            manifests[str(rd.relative_to(tree.root))] = read_manifest(rd)
            pr = tree.probe(task, model) / PROBE_RESULTS
            if pr.exists():
                df = pd.read_csv(pr)
                df.insert(0, "task", task)
                df.insert(0, "model", model)
                probes.append(df)
    headline = pd.concat(heads, ignore_index=True)
    threshold_free = pd.concat(free, ignore_index=True)
    task_table = task_rows(headline, abl, runs, threshold_free)
    reproduction = reproduction_table(task_table, {k: v.parent for k, v in abl.items()}, aliases)
    compare_csv = tree.compare / compare_table_name(models)
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
    inp = ReportInputs(tasks=task_table, headline=headline,
                       findings=findings(task_table, headline, notes) + comparison_findings(task_table),
                       figures=figures,
                       files=["../" + f for f in files]
                       + ([f"../{work.relative_to(tree.root).as_posix()}/"] if work.is_dir() else []),
                       manifests=manifests, probe=pd.concat(probes, ignore_index=True) if probes else None,
                       notes=notes, previews=previews, section_figures=section_figures, galleries=galleries,
                       threshold_free=threshold_free,
                       comparison=read_table(compare_csv) if len(models) >= 2 and compare_csv.is_file() else None,
                       reproduction=reproduction)
    dest = tree.report
    written = []
    tuning = tuning_section(tree, models)
    if tuning is not None:
        inp.extra_sections.append(("Tuning curves: preferred values of each class's units", tuning[1], tuning[2]))
        written.append(save_csv(tuning[0], dest / TUNING_RANGES_CSV, overwrite=overwrite))
    steering = steering_section(tree, models)
    if steering is not None:
        inp.extra_sections.append(("Steering: each class set scaled by a gain", *steering))
    return written + [save_csv(headline, dest / HEADLINE_CSV, overwrite=overwrite),
            save_csv(task_table, dest / TASKS_CSV, overwrite=overwrite),
            save_csv(threshold_free, dest / THRESHOLD_FREE_CSV, overwrite=overwrite),
            save_csv(reproduction, dest / REPRODUCTION_CSV, overwrite=overwrite),
            save_text(write_summary_md(inp), dest / SUMMARY_MD, overwrite=overwrite),
            save_text(write_index_html(inp), dest / INDEX_HTML, overwrite=overwrite)]
