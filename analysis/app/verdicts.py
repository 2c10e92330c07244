"""The verdict of every ablated class set of a pipeline run: ``report/ablation_summary.csv`` and ``report/tasks.csv``.

One row per ablated class set (task, model, selector, class), from the stage outputs only
(``ablation.csv`` of the ablation stage, ``neurons.pt`` / ``stability.csv`` of the run folder):

* ``on_target_delta`` — the change of the class's recall when its set is zeroed, with ``change_lo`` /
  ``change_hi``, the paired bootstrap interval over the class's test clips
  (:func:`analysis.ablation.set_change_interval`);
* ``p_value`` — the exact Monte-Carlo p against the set's size- and layer-matched random draws
  (:func:`analysis.significance.monte_carlo_p`, ties against the set), ``p_adjusted`` — Holm (default) or
  Benjamini–Hochberg over every test of the run (:func:`apply_verdicts`);
* ``specific`` — adjusted p < alpha, on-target change < 0 and the probe above chance (the lower end of
  the Wilson interval of its test accuracy above :func:`analysis.significance.chance_rate`); ``failed``
  names the criteria a set misses (:func:`analysis.significance.failed_criteria`);
* the set's bootstrap stability (mean Jaccard over replicates, ``unstable`` below
  :data:`analysis.significance.UNSTABLE_JACCARD`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from analysis.aape import inactive_neurons, neurons_to_masks
from analysis.ablation import ALL_CLASSES as ALL
from analysis.ablation import matched_draws, set_change_interval
from analysis.app.report import entropy_quantiles
from analysis.overlap import union_mask
from analysis.runs.layout import ABLATION_SUMMARY_CSV
from analysis.runs.read import (
    count_selected,
    read_ablation_conditions,
    read_classes,
    read_neurons,
    read_over_zero,
    read_stability,
    read_table,
)
from analysis.significance import (
    ALPHA,
    LEVEL,
    UNSTABLE_JACCARD,
    Correction,
    adjust_p,
    attainable,
    chance_rate,
    empirical_interval,
    failed_criteria,
    monte_carlo_p,
    probe_above_chance,
    smallest_p,
    wilson_interval,
)

#: The selector of the AAPE class sets (``class:<c>`` conditions).
AAPE = "aape"
VERDICT_COLUMNS = [
    "task",
    "model",
    "selector",
    "class",
    "neurons",
    "on_target_delta",
    "change_lo",
    "change_hi",
    "random_draws",
    "random_delta_mean",
    "random_delta_lo",
    "random_delta_hi",
    "p_value",
    "p_adjusted",
    "correction",
    "alpha",
    "specific",
    "failed",
    "probe_accuracy",
    "probe_accuracy_lo",
    "probe_accuracy_hi",
    "chance_rate",
    "baseline_recall",
    "baseline_recall_lo",
    "baseline_recall_hi",
    "off_target_delta_mean",
    "stability_mean_jaccard",
    "stability_jaccard_lo",
    "stability_jaccard_hi",
    "unstable",
]
THRESHOLD_FREE_COLUMNS = [
    "model",
    "task",
    "class",
    "k",
    "on_target_delta",
    "change_lo",
    "change_hi",
    "random_delta_mean",
    "random_delta_lo",
    "random_delta_hi",
    "random_draws",
    "p_value",
    "below_random",
]
TASK_COLUMNS = [
    "model",
    "task",
    "classes",
    "classes_covered",
    "neurons_per_class",
    "selected_neurons",
    "class_assignments",
    "probe_accuracy",
    "probe_accuracy_lo",
    "probe_accuracy_hi",
    "test_clips",
    "chance_rate",
    "probe_p_value",
    "probe_above_chance",
    "probe_seeds",
    "probe_seed_mean",
    "probe_seed_sd",
    "probe_steps_min",
    "probe_seeds_unsettled",
    "classes_specific",
    "specific_by_selector",
    "best_selector",
    "inactive_neurons",
    "random_draws",
    "smallest_p",
    "tests_in_run",
    "attainable",
    "mean_on_target_delta",
    "mean_random_delta",
    "mean_off_target_delta",
    "mean_stability_jaccard",
    "unstable_sets",
    "entropy_q01",
    "entropy_q05",
    "entropy_q25",
    "entropy_q50",
    "dead_neurons",
    "lowent_k",
    "lowent_classes",
    "lowent_random_draws",
    "lowent_classes_below_random",
    "lowent_mean_delta",
    "lowent_mean_random_delta",
]


def class_sets(run_dir: str | Path) -> tuple[list[str], list[int], int, int]:
    """The run folder's classes, the size of each class's AAPE set, the distinct neurons selected (rows of
    ``neurons.csv``, else the union of the sets) and the class assignments (sum of the set sizes)."""
    classes = read_classes(run_dir)
    over = read_over_zero(run_dir)
    L, N, C = over.shape
    masks = neurons_to_masks(read_neurons(run_dir, C, L), C, (L, N))
    sizes = [int(m.sum()) for m in masks]
    selected = count_selected(run_dir)
    return classes, sizes, int(union_mask(masks).sum()) if selected is None else int(selected), sum(sizes)


def _stability(run_dir: str | Path) -> dict[str, tuple[float, float, float]]:
    st = read_stability(run_dir)
    if st is None:
        return {}
    return {
        str(r["class"]): (float(r["mean_jaccard"]), float(r["jaccard_low"]), float(r["jaccard_high"]))
        for _, r in st.iterrows()
    }


def probe_test(t: pd.DataFrame) -> dict[str, object]:
    """The probe's clean test accuracy (the baseline of ``ablation.csv``) with its Wilson interval, the
    chance rate, the one-sided binomial p and ``probe_above_chance`` (the interval's lower end above chance)."""
    base = t[t["kind"] == "baseline"]
    everything = base[base["class"] == ALL]
    per_class = base[base["class"] != ALL]["n"].astype(int).tolist()
    if everything.empty or not sum(per_class):
        return dict(
            probe_accuracy=math.nan,
            probe_accuracy_lo=math.nan,
            probe_accuracy_hi=math.nan,
            test_clips=0,
            chance_rate=math.nan,
            probe_p_value=math.nan,
            probe_above_chance=False,
        )
    n, correct = int(everything["n"].iloc[0]), int(everything["correct"].iloc[0])
    chance = chance_rate(per_class)
    lo, hi = wilson_interval(correct, n)
    return dict(
        probe_accuracy=correct / n,
        probe_accuracy_lo=lo,
        probe_accuracy_hi=hi,
        test_clips=n,
        chance_rate=chance,
        probe_p_value=probe_above_chance(correct, n, chance)[1],
        probe_above_chance=bool(lo > chance),
    )


def stage_p_values(ablation_csv: str | Path) -> dict[tuple[str, str], float]:
    """(condition, class) → ``p_value`` of the ablation stage's own ``ablation_summary.csv`` (next to
    ``ablation.csv``; the stage knows whether drawing stopped early, so its p is the sequential form
    then); empty when the file or the column is missing (an older ablation stage)."""
    p = Path(ablation_csv).with_name(ABLATION_SUMMARY_CSV)
    if not p.is_file():
        return {}
    s = read_table(p)
    if "p_value" not in s.columns:
        return {}
    s = s[s["p_value"].notna()]
    return {(str(g), str(c)): float(v) for g, c, v in zip(s["group"], s["class"], s["p_value"])}


def _set_test(
    t: pd.DataFrame,
    condition: str,
    cls: str,
    stage_p: Optional[Mapping[tuple[str, str], float]] = None,
    conditions: Optional[list[dict]] = None,
) -> dict[str, float]:
    """The change of ``cls`` under ``condition``, its bootstrap interval, its matched draws and exact p
    (the ablation stage's, ``stage_p``, when it wrote one; else :func:`monte_carlo_p` over the draws)."""
    own = t[(t["condition"] == condition) & (t["class"] == cls)]
    on = float(own["delta"].iloc[0]) if len(own) else math.nan
    lo, hi = set_change_interval(own)
    d = matched_draws(t, condition, cls, conditions)
    rlo, rhi = empirical_interval(d, LEVEL)
    return dict(
        on_target_delta=on,
        change_lo=lo,
        change_hi=hi,
        random_draws=len(d),
        random_delta_mean=float(np.mean(d)) if len(d) else math.nan,
        random_delta_lo=rlo,
        random_delta_hi=rhi,
        p_value=(stage_p or {}).get((condition, cls), monte_carlo_p(on, d)) if len(own) else math.nan,
    )


def _conditions_record(ablation_csv: str | Path) -> Optional[dict]:
    """``ablation_conditions.json`` beside ``ablation_csv`` (None without: an older ablation stage)."""
    try:
        return read_ablation_conditions(Path(ablation_csv).parent)
    except FileNotFoundError:
        return None


def ablation_conditions(ablation_csv: str | Path) -> Optional[list[dict]]:
    """The condition descriptions of ``ablation_conditions.json`` beside ``ablation_csv`` (None without)."""
    rec = _conditions_record(ablation_csv)
    return None if rec is None else rec["conditions"]


def draw_cap(ablation_csv: str | Path, used: int) -> int:
    """The most matched draws a set of this ablation run could get (``random_draws`` of
    ``ablation_conditions.json``): a set whose drawing stopped early (sequential test) used fewer, so
    whether the run *can* pass the corrected level depends on the cap, not on the draws used. ``used``
    (the largest count used) when the file does not record it (older runs)."""
    cap = (_conditions_record(ablation_csv) or {}).get("random_draws")
    return max(int(cap), used) if isinstance(cap, int) else used


def _selectors(t: pd.DataFrame) -> list[str]:
    """The baseline selectors whose sets ``ablation.csv`` holds (``selector`` conditions ``<name>:<class>``)."""
    names = t.loc[t["kind"] == "selector", "condition"].astype(str)
    return list(dict.fromkeys(n.split(":", 1)[0] for n in names))


def verdict_rows(model: str, task: str, run_dir: str | Path, ablation_csv: str | Path) -> pd.DataFrame:
    """One row per ablated class set of (model, task) (:data:`VERDICT_COLUMNS`): the AAPE sets
    (``class:<c>``), then each baseline selector's (``<selector>:<c>``, same sizes), before the
    correction (``p_adjusted`` / ``specific`` / ``failed`` are filled by :func:`apply_verdicts`)."""
    classes, sizes, _, _ = class_sets(run_dir)
    stability = _stability(run_dir)
    t = read_table(ablation_csv)
    stage_p = stage_p_values(ablation_csv)
    conds = ablation_conditions(ablation_csv)
    probe = probe_test(t)
    base = t[t["kind"] == "baseline"].set_index("class")
    rows = []
    for selector in [AAPE, *_selectors(t)]:
        for c, n in zip(classes, sizes):
            cond = f"class:{c}" if selector == AAPE else f"{selector}:{c}"
            if n == 0 or not (t["condition"] == cond).any():
                continue
            own = t[t["condition"] == cond]
            off = own[(own["class"] != c) & (own["class"] != ALL)]["delta"]
            jac = stability.get(c, (math.nan, math.nan, math.nan)) if selector == AAPE else (math.nan,) * 3
            b_n, b_ok = (int(base.loc[c, "n"]), int(base.loc[c, "correct"])) if c in base.index else (0, 0)
            b_lo, b_hi = wilson_interval(b_ok, b_n)
            rows.append(
                dict(
                    task=task,
                    model=model,
                    selector=selector,
                    **{"class": c},
                    neurons=n,
                    **_set_test(t, cond, c, stage_p, conds),
                    p_adjusted=math.nan,
                    correction="",
                    alpha=math.nan,
                    specific=False,
                    failed="",
                    probe_accuracy=probe["probe_accuracy"],
                    probe_accuracy_lo=probe["probe_accuracy_lo"],
                    probe_accuracy_hi=probe["probe_accuracy_hi"],
                    chance_rate=probe["chance_rate"],
                    baseline_recall=b_ok / b_n if b_n else math.nan,
                    baseline_recall_lo=b_lo,
                    baseline_recall_hi=b_hi,
                    off_target_delta_mean=float(off.mean()) if len(off) else math.nan,
                    stability_mean_jaccard=jac[0],
                    stability_jaccard_lo=jac[1],
                    stability_jaccard_hi=jac[2],
                    unstable=bool(np.isfinite(jac[0]) and jac[0] < UNSTABLE_JACCARD),
                )
            )
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def apply_verdicts(rows: pd.DataFrame, alpha: float = ALPHA, correction: Correction = "holm") -> pd.DataFrame:
    """Correct the p-values of every test of the run at once (all tasks, models, selectors, classes) and
    decide ``specific``; ``failed`` lists the criteria a set misses (``;``-joined)."""
    out = rows.copy()
    out["p_adjusted"] = adjust_p(out["p_value"].astype(float).to_numpy(), correction) if len(out) else []
    out["correction"], out["alpha"] = correction, float(alpha)
    fails = [
        failed_criteria(r.p_adjusted, r.on_target_delta, r.probe_accuracy_lo, r.chance_rate, alpha)
        for r in out.itertuples()
    ]
    out["failed"] = ["; ".join(f) for f in fails]
    out["specific"] = [not f for f in fails]
    return out


def threshold_free_rows(model: str, task: str, ablation_csv: str | Path) -> pd.DataFrame:
    """One row per ``lowent:<c>:<k>`` condition of ``ablation.csv``: the change of class c's recall when its
    k lowest-entropy neurons are zeroed, with its bootstrap interval, the matched random draws (mean, 95 %
    interval), the exact p and ``below_random`` (p < alpha, uncorrected: a descriptive control)."""
    t = read_table(ablation_csv)
    rows = []
    for cond in dict.fromkeys(t.loc[t["kind"] == "lowent", "condition"]):
        _, c, k = cond.rsplit(":", 2)
        test = _set_test(t, cond, c, stage_p_values(ablation_csv), ablation_conditions(ablation_csv))
        rows.append(
            dict(model=model, task=task, **{"class": c}, k=int(k), **test, below_random=bool(test["p_value"] < ALPHA))
        )
    return pd.DataFrame(rows, columns=THRESHOLD_FREE_COLUMNS)


def best_selector(specific: Mapping[str, int]) -> str:
    """The selector with the most specific sets (``aape`` first among equals; ``none`` when no set is
    specific; ties named together).

    >>> best_selector({"aape": 1, "contrast": 3, "magnitude": 3}), best_selector({"aape": 0}), best_selector({})
    ('contrast, magnitude', 'none', 'none')
    """
    top = max(specific.values(), default=0)
    return "none" if top == 0 else ", ".join(k for k, v in specific.items() if v == top)


def _mean(x: pd.Series) -> float:
    x = pd.to_numeric(x, errors="coerce").dropna()
    return float(x.mean()) if len(x) else math.nan


def probe_seeds(results: Optional[pd.DataFrame]) -> dict[str, float]:
    """Number of seeds, the mean ± sample sd of their test scores, the fewest optimizer steps of a seed and
    the seeds whose training loss had not settled (``probe_results.csv``; NaN without, or without the
    columns of an older probe stage)."""
    if results is None or results.empty:
        return dict(
            probe_seeds=0,
            probe_seed_mean=math.nan,
            probe_seed_sd=math.nan,
            probe_steps_min=math.nan,
            probe_seeds_unsettled=math.nan,
        )
    seeds = results[~results["seed"].astype(str).isin(["mean", "std"])]
    x = pd.to_numeric(seeds["test_score"], errors="coerce").dropna()
    steps = pd.to_numeric(seeds["steps"], errors="coerce").dropna() if "steps" in seeds else pd.Series(dtype=float)
    settled = seeds["loss_settled"].astype(str).str.lower() if "loss_settled" in seeds else None
    return dict(
        probe_seeds=len(x),
        probe_seed_mean=float(x.mean()) if len(x) else math.nan,
        probe_seed_sd=float(x.std(ddof=1)) if len(x) > 1 else math.nan,
        probe_steps_min=int(steps.min()) if len(steps) else math.nan,
        probe_seeds_unsettled=int((settled != "true").sum()) if settled is not None else math.nan,
    )


def task_rows(
    verdicts: pd.DataFrame,
    ablation: Mapping[tuple[str, str], str | Path],
    runs: Mapping[tuple[str, str], str | Path],
    threshold_free: Optional[pd.DataFrame] = None,
    alpha: float = ALPHA,
    correction: Correction = "holm",
    probes: Optional[Mapping[tuple[str, str], pd.DataFrame]] = None,
) -> pd.DataFrame:
    """One row per (model, task) in the order of ``ablation``: set sizes (``selected_neurons`` = distinct
    neurons, ``class_assignments`` = sum of the class sets), the probe against chance, the verdicts of its
    sets (after :func:`apply_verdicts`), whether the run's draws can pass the corrected level at all
    (``attainable``), stability, entropy quantiles and the threshold-free ablation at its largest k."""
    tf = threshold_free if threshold_free is not None else pd.DataFrame(columns=THRESHOLD_FREE_COLUMNS)
    tests = int(verdicts["p_value"].notna().sum()) if len(verdicts) else 0
    rows = []
    for (model, task), csv in ablation.items():
        mine = verdicts[(verdicts["model"] == model) & (verdicts["task"] == task)]
        g = mine[mine["selector"] == AAPE]
        by_sel = {s: int(x["specific"].astype(bool).sum()) for s, x in mine.groupby("selector", sort=False)}
        classes, sizes, selected, assignments = class_sets(runs[(model, task)])
        over = read_over_zero(runs[(model, task)])
        ent = entropy_quantiles(over)
        own = tf[(tf["model"] == model) & (tf["task"] == task)]
        k = int(own["k"].max()) if len(own) else math.nan
        at_k = own[own["k"] == k]
        draws = draw_cap(csv, int(g["random_draws"].max()) if len(g) else 0)
        jac = g["stability_mean_jaccard"].astype(float)
        rows.append(
            dict(
                model=model,
                task=task,
                classes=len(classes),
                classes_covered=sum(1 for s in sizes if s),
                neurons_per_class=float(np.mean(sizes)) if sizes else math.nan,
                selected_neurons=selected,
                class_assignments=assignments,
                **probe_test(read_table(csv)),
                **probe_seeds((probes or {}).get((model, task))),
                classes_specific=int(g["specific"].astype(bool).sum()),
                specific_by_selector="; ".join(f"{k}: {v}" for k, v in by_sel.items()),
                best_selector=best_selector(by_sel),
                inactive_neurons=int(inactive_neurons(over).sum()),
                random_draws=draws,
                smallest_p=smallest_p(draws),
                tests_in_run=tests,
                attainable=attainable(draws, tests, alpha, correction),
                mean_on_target_delta=_mean(g["on_target_delta"]),
                mean_random_delta=_mean(g["random_delta_mean"]),
                mean_off_target_delta=_mean(g["off_target_delta_mean"]),
                mean_stability_jaccard=_mean(jac),
                unstable_sets=int((jac < UNSTABLE_JACCARD).sum()),
                **{
                    key: ent.get(key, math.nan)
                    for key in ("entropy_q01", "entropy_q05", "entropy_q25", "entropy_q50", "dead_neurons")
                },
                lowent_k=k,
                lowent_classes=len(at_k),
                lowent_random_draws=int(at_k["random_draws"].max()) if len(at_k) else 0,
                lowent_classes_below_random=int(at_k["below_random"].astype(bool).sum()),
                lowent_mean_delta=_mean(at_k["on_target_delta"]),
                lowent_mean_random_delta=_mean(at_k["random_delta_mean"]),
            )
        )
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


#: Columns of :func:`headline_rows` (the notebook API's per-class table).
HEADLINE_COLUMNS = [
    "model",
    "task",
    "class",
    "neurons",
    "on_target_delta",
    "change_lo",
    "change_hi",
    "random_delta_mean",
    "random_delta_lo",
    "random_delta_hi",
    "random_draws",
    "p_value",
    "p_adjusted",
    "specific",
    "failed",
    "off_target_delta_mean",
    "baseline_recall",
    "stability_mean_jaccard",
    "stability_jaccard_lo",
    "stability_jaccard_hi",
]


def neurons_per_class(run_dir: str | Path) -> dict[str, int]:
    """Class name → number of (layer, neuron) pairs assigned to it in ``neurons.pt``."""
    classes, sizes, _, _ = class_sets(run_dir)
    return dict(zip(classes, sizes))


def headline_rows(
    model: str,
    task: str,
    run_dir: str | Path,
    ablation_csv: str | Path,
    alpha: float = ALPHA,
    correction: Correction = "holm",
) -> pd.DataFrame:
    """One row per class of one (model, task) (:data:`HEADLINE_COLUMNS`; classes without a set get NaN
    changes): its AAPE set's verdict with the correction over this model × task's sets only. The report's
    ``ablation_summary.csv`` corrects over every test of the run, so its ``p_adjusted`` can be larger."""
    sets = apply_verdicts(verdict_rows(model, task, run_dir, ablation_csv), alpha, correction)
    sets = sets[sets["selector"] == AAPE].set_index("class")
    rows = []
    for c, n in neurons_per_class(run_dir).items():
        row = {k: math.nan for k in HEADLINE_COLUMNS}
        row.update(model=model, task=task, neurons=n, random_draws=0, specific=False, failed="")
        row["class"] = c
        if c in sets.index:
            row.update({k: sets.loc[c, k] for k in HEADLINE_COLUMNS if k in sets.columns and k != "class"})
        rows.append(row)
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)
