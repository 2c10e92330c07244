"""The verdict of every ablated class set of a pipeline run: ``report/ablation_summary.csv`` (the per-task
table ``report/tasks.csv`` sums them up: :mod:`analysis.app.task_verdicts`).

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

:func:`headline_rows` is the notebook API's per-class view of one model × task's sets."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from analysis.aape import neurons_to_masks
from analysis.ablation import ALL_CLASSES as ALL
from analysis.ablation import matched_draws, set_change_interval
from analysis.overlap import union_mask
from analysis.runs.layout import ABLATION_GROUPS_CSV
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
    chance_rate,
    empirical_interval,
    failed_criteria,
    monte_carlo_p,
    probe_above_chance,
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
    """(condition, class) → ``p_value`` of the ablation stage's own ``ablation_groups.csv`` (next to
    ``ablation.csv``; the stage knows whether drawing stopped early, so its p is the sequential form
    then); empty when the file or the column is missing (an older ablation stage)."""
    p = Path(ablation_csv).with_name(ABLATION_GROUPS_CSV)
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
