"""The per-task table of a pipeline run (``report/tasks.csv``): one row per model × task, its set sizes, the
probe against chance, the verdicts of its sets (:mod:`analysis.app.verdicts`) summed up, whether the run's
draws can pass the corrected level at all, stability, entropy quantiles and the threshold-free ablation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from analysis.aape import inactive_neurons
from analysis.app.report import entropy_quantiles
from analysis.app.verdicts import AAPE, THRESHOLD_FREE_COLUMNS, class_sets, draw_cap, probe_test
from analysis.runs.read import read_over_zero, read_table
from analysis.significance import ALPHA, UNSTABLE_JACCARD, Correction, attainable, smallest_p

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
