"""The sentences and the verdict table of the report: every number they print is a cell of ``tasks.csv`` or
``ablation_summary.csv`` (the rows of :mod:`analysis.app.verdicts`), formatted, never recomputed.

* :func:`verdict_table` — the first table of ``summary.md`` and ``index.html``: per (task, model) the
  probe's accuracy [95 % Wilson interval] vs chance, the classes with a specific set (change [bootstrap
  interval], adjusted p) and the stability of its sets;
* :func:`findings` — one plain sentence per (model, task): why a set is or is not called specific (which
  criterion failed), stability (always, also when the probe is at chance), the saturation case, the
  threshold-free control; :func:`run_findings` — the run-level test statement (correction, draws, whether
  the smallest attainable p can pass); :func:`comparison_findings` — models side by side.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from analysis.app.markdown import md_escape
from analysis.significance import UNSTABLE_JACCARD

#: The phrase that replaces every ablation claim of a probe at chance level.
AT_CHANCE = "the probe is at chance level: ablation effects are not interpretable"
#: The selection warning of a saturated quantile bar (``analysis.aape``'s SaturationWarning text).
SATURATION_MARK = "saturates"
#: Column names of :func:`verdict_table`.
VERDICT_HEADERS = [
    "Task",
    "Model",
    "Probe accuracy [95 % interval]",
    "Chance",
    "Specific sets: class change [95 % interval] (adjusted p)",
    "Stability (mean Jaccard)",
]


def _iv(lo: float, hi: float, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    if not (isinstance(lo, float) and isinstance(hi, float)) or math.isnan(lo) or math.isnan(hi):
        return "[–]"
    return "[" + f.format(lo) + ", " + f.format(hi) + "]"


def probe_cell(r: pd.Series) -> str:
    """``0.958 [0.884, 0.986]`` from a ``tasks.csv`` row (``–`` without test clips)."""
    if not r["test_clips"]:
        return "–"
    return f"{r['probe_accuracy']:.3f} {_iv(float(r['probe_accuracy_lo']), float(r['probe_accuracy_hi']))}"


def set_cell(v: pd.Series, escape=md_escape) -> str:
    """``c3 −0.833 [−1.000, −0.583] (p 0.012)`` from an ``ablation_summary.csv`` row."""
    return (
        f"{escape(v['class'])} {v['on_target_delta']:+.3f} {_iv(float(v['change_lo']), float(v['change_hi']), True)}"
        f" (p {v['p_adjusted']:.2g})"
    )


def stability_cell(r: pd.Series) -> str:
    """``0.62, 1 of 6 sets unstable`` from a ``tasks.csv`` row."""
    if not r["classes_covered"]:
        return "no sets"
    if math.isnan(float(r["mean_stability_jaccard"])):
        return "not measured"
    return f"{r['mean_stability_jaccard']:.2f}, {r['unstable_sets']} of {r['classes_covered']} sets unstable"


def _specific_cell(r: pd.Series, own: pd.DataFrame, escape) -> str:
    if not r["test_clips"]:
        return "not tested"
    if not r["probe_above_chance"]:
        return "none: probe at chance"
    if not r["classes_covered"]:
        return "none: no set selected"
    spec = own[own["specific"].astype(bool)]
    if spec.empty:
        blocked = "" if bool(r["attainable"]) else f" ({r['random_draws']} draws cannot pass the corrected level)"
        return f"none of {len(own)}{blocked}"
    return f"{len(spec)} of {len(own)}: " + "; ".join(set_cell(v, escape) for _, v in spec.iterrows())


def verdict_table(tasks: pd.DataFrame, verdicts: pd.DataFrame, escape=md_escape) -> pd.DataFrame:
    """One row per (task, model) with :data:`VERDICT_HEADERS` (text cells; labels through ``escape``)."""
    rows = []
    for _, r in tasks.iterrows():
        own = verdicts[
            (verdicts["model"] == r["model"]) & (verdicts["task"] == r["task"]) & (verdicts["selector"] == "aape")
        ]
        rows.append(
            [
                escape(r["task"]),
                escape(r["model"]),
                probe_cell(r),
                "–" if math.isnan(float(r["chance_rate"])) else f"{r['chance_rate']:.3f}",
                _specific_cell(r, own, escape),
                stability_cell(r),
            ]
        )
    return pd.DataFrame(rows, columns=VERDICT_HEADERS)


def run_findings(tasks: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """The run-level statement of the test: how many tests, which correction at which alpha, the draws
    per set and whether the smallest attainable p can pass the corrected level (else nothing is specific)."""
    if tasks.empty or verdicts.empty:
        return ["No class set was ablated, so no test was run."]
    corr = {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(str(verdicts["correction"].iloc[0]), "")
    alpha = float(verdicts["alpha"].iloc[0])
    tests = int(tasks["tests_in_run"].max())
    draws = sorted({int(d) for d in tasks["random_draws"] if d})
    txt = (
        f"Each ablated set is tested against its size- and layer-matched random sets (exact Monte-Carlo p, "
        f"ties count against the set); {tests} tests, {corr} correction at alpha {alpha:g}; "
        f"random draws per set: {', '.join(map(str, draws)) or 'none'}."
    )
    blocked = tasks[(tasks["random_draws"] > 0) & ~tasks["attainable"].astype(bool)]
    if len(blocked):
        r = blocked.iloc[0]
        txt += (
            f" With {r['random_draws']} draws the smallest attainable p is {r['smallest_p']:.3g}, which cannot pass "
            f"the corrected level for {tests} tests: nothing can be called specific in this run "
            "(raise ablation.random_draws)."
        )
    return [txt]


def _reasons(own: pd.DataFrame, escape) -> str:
    """``adjusted p >= alpha: b, c; on-target change not negative: d`` (criteria a probe above chance misses)."""
    by: dict[str, list[str]] = {}
    for _, v in own[~own["specific"].astype(bool)].iterrows():
        for f in filter(None, str(v["failed"]).split("; ")):
            if f != "probe not above chance":
                by.setdefault(f, []).append(escape(v["class"]))
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in by.items())


def _stability_txt(r: pd.Series, own: pd.DataFrame, escape) -> str:
    if not r["classes_covered"]:
        return ""
    if math.isnan(float(r["mean_stability_jaccard"])):
        return " Stability of the sets was not measured (no stability.csv)."
    unstable = own[own["unstable"].astype(bool)]["class"].map(escape).tolist()
    return (
        f" Stability: mean Jaccard {r['mean_stability_jaccard']:.2f} over replicates of its "
        f"{r['classes_covered']} sets; "
        + (f"unstable (< {UNSTABLE_JACCARD}): {', '.join(unstable)}." if unstable else "none is unstable.")
    )


def _selector_txt(r: pd.Series) -> str:
    """The selectors side by side (``specific_by_selector`` / ``best_selector`` of ``tasks.csv``)."""
    cell = str(r.get("specific_by_selector", "") or "")
    if cell.count(":") < 2:
        return ""
    return f" Specific sets by selector (same sizes, same test): {cell}; most: {r['best_selector']}."


def _threshold_free_txt(r: pd.Series) -> str:
    if not r["lowent_classes"]:
        return ""
    return (
        f" Threshold-free control: each class's k={r['lowent_k']} lowest-entropy neurons beat their "
        f"{r['lowent_random_draws']} matched random sets (p < 0.05, uncorrected) for "
        f"{r['lowent_classes_below_random']} of {r['lowent_classes']} classes (mean change "
        f"{r['lowent_mean_delta']:+.3f} vs {r['lowent_mean_random_delta']:+.3f}; threshold_free.csv)."
        + (f" With {r['lowent_random_draws']} draws no p can be below 0.05." if r["lowent_random_draws"] < 20 else "")
    )


def _empty_txt(notes: Sequence[str]) -> str:
    if any(SATURATION_MARK in n for n in notes):
        return (
            " No neuron was selected because the activation probabilities saturate at 1: the selection's "
            "quantile bar equals the largest probability, so no neuron can exceed it. This is an artefact of "
            "the quantile bars, not evidence that the model has no class-specific neurons; the threshold-free "
            "control does not depend on it."
        )
    return " No class-specific neuron was selected, so no class set was ablated."


def findings(
    tasks: pd.DataFrame,
    verdicts: pd.DataFrame,
    notes: Optional[dict[tuple[str, str], list[str]]] = None,
    escape=md_escape,
) -> list[str]:
    """One sentence per (model, task) (module docstring); ``notes``: the selection's warnings per run."""
    out, notes = [], notes or {}
    for _, r in tasks.iterrows():
        key = (r["model"], r["task"])
        own = verdicts[(verdicts["model"] == key[0]) & (verdicts["task"] == key[1]) & (verdicts["selector"] == "aape")]
        txt = f"{escape(key[0])} on {escape(key[1])}: "
        if r["test_clips"]:
            seeds = (
                ""
                if math.isnan(float(r.get("probe_seed_sd", math.nan)))
                else (f", {r['probe_seeds']} probe seeds {r['probe_seed_mean']:.3f} ± {r['probe_seed_sd']:.3f}")
            )
            txt += (
                f"probe accuracy {probe_cell(r)} on {r['test_clips']} test clips vs chance "
                f"{r['chance_rate']:.3f}{seeds}."
            )
            unsettled = r.get("probe_seeds_unsettled", math.nan)
            if isinstance(unsettled, (int, float)) and not math.isnan(unsettled) and unsettled > 0:
                txt += (
                    f" Probe training stopped before the loss settled for {int(unsettled)} of {r['probe_seeds']} "
                    f"seeds (fewest steps {r['probe_steps_min']}; probe_results.csv)."
                )
        if r["classes_covered"] == 0:
            txt += _empty_txt(notes.get(key, []))
        elif r["test_clips"] and not r["probe_above_chance"]:
            txt += (
                f" The lower end of the probe's interval is not above chance, so {AT_CHANCE}; none of its "
                f"{len(own)} sets is called specific."
            )
        elif len(own):
            spec = own[own["specific"].astype(bool)]
            txt += f" {len(spec)} of {len(own)} sets specific"
            txt += (": " + "; ".join(set_cell(v, escape) for _, v in spec.iterrows()) + ".") if len(spec) else "."
            why = _reasons(own, escape)
            txt += f" Not specific ({why})." if why else ""
            txt += f" Off-target classes change by {r['mean_off_target_delta']:+.3f} on average."
        out.append(txt + _stability_txt(r, own, escape) + _selector_txt(r) + _threshold_free_txt(r))
    return out


def comparison_findings(tasks: pd.DataFrame, escape=md_escape) -> list[str]:
    """With two or more models: per task, whose probe is more accurate (with intervals) and the set sizes."""
    models = list(dict.fromkeys(tasks["model"]))
    if len(models) < 2:
        return []
    out = []
    for task, g in tasks.groupby("task", sort=False):
        g = g.set_index("model")
        ms = [m for m in models if m in g.index and g.loc[m, "test_clips"]]
        if len(ms) < 2:
            continue
        best = max(ms, key=lambda m: float(g.loc[m, "probe_accuracy"]))
        parts = "; ".join(
            f"{escape(m)} {probe_cell(g.loc[m])}, {g.loc[m, 'classes_covered']}/{g.loc[m, 'classes']} "
            f"classes with a set, {g.loc[m, 'selected_neurons']} neurons"
            for m in ms
        )
        txt = f"Comparison on {escape(task)}: {parts}. The most accurate probe is {escape(best)}'s"
        overlap = [
            m
            for m in ms
            if m != best and float(g.loc[m, "probe_accuracy_hi"]) >= float(g.loc[best, "probe_accuracy_lo"])
        ]
        txt += " (its interval overlaps " + ", ".join(escape(m) for m in overlap) + "'s)." if overlap else "."
        out.append(txt)
    return out
