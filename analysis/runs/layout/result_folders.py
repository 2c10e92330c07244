"""Names of the folders the later steps write: probe, ablation, tuning, model report, comparison of models
and the pipeline's report, and the PNG preview beside every PDF figure (see :mod:`analysis.runs.layout`)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def figure_preview(pdf: str | os.PathLike) -> Path:
    """The PNG preview written beside a PDF figure (same name, ``.png``)."""
    return Path(pdf).with_suffix(".png")


# -- probe folder ---------------------------------------------------------------------------------
PROBE_RESULTS = "probe_results.csv"


def probe_checkpoint_name(seed: int | str) -> str:
    """File name of the best checkpoint of one probe seed."""
    return f"probe_seed{seed}.ckpt"


# -- ablation folder ------------------------------------------------------------------------------
ABLATION_CSV = "ablation.csv"
#: per condition group × class: accuracy change, matched-draw statistics, p-value (analysis.ablation.summarise);
#: not the report's verdict table (ABLATION_SUMMARY_CSV, one row per ablated set)
ABLATION_GROUPS_CSV = "ablation_groups.csv"
ABLATION_CONDITIONS_JSON = "ablation_conditions.json"
ABLATION_MATRIX_PDF = "ablation_matrix.pdf"
ABLATION_K_CURVE_PDF = "ablation_k_curve.pdf"
#: per condition × true class × predicted class counts (non-zero ones), see analysis.ablation.confusion_table
ABLATION_CONFUSION_CSV = "ablation_confusion.csv"
#: change in confusion vs baseline of the chosen conditions
ABLATION_CONFUSION_PDF = "ablation_confusion.pdf"
ABLATION_FILES = (
    ABLATION_CSV,
    ABLATION_GROUPS_CSV,
    ABLATION_MATRIX_PDF,
    ABLATION_K_CURVE_PDF,
    ABLATION_CONDITIONS_JSON,
    ABLATION_CONFUSION_CSV,
    ABLATION_CONFUSION_PDF,
)


def confusion_figure_name(conditions: list[str]) -> str:
    """The change-in-confusion figure of chosen conditions (``python -m analysis confusion``): condition
    names with every character other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``.

    >>> confusion_figure_name(["shared:ANG&HAP", "class:jazz"])
    'ablation_confusion-shared_ANG_HAP-class_jazz.pdf'
    """
    slug = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", c) for c in conditions)
    return f"ablation_confusion-{slug}.pdf"


# -- tuning folder (``models/<model>/tuning/`` of a pipeline output tree) ---------------------------
TUNING_DIR = "tuning"
#: Steering curves of one model (every task's class sets × gains), beside its tuning folder.
STEERING_CSV = "steering.csv"
STEERING_PDF = "steering.pdf"


def tuning_csv(dimension: str) -> str:
    """The tuning table of one stimulus dimension (one row per unit: preferred value, bandwidth, selectivity)."""
    return f"{dimension}.csv"


def tuning_pt(dimension: str) -> str:
    """The tuning curves of one stimulus dimension (``values`` [V], ``p_active`` / ``mean`` [L, N, V], ...)."""
    return f"{dimension}.pt"


def tuning_figure_name(dimension: str, task: str) -> str:
    """Curves of each class's selected units of ``task`` along ``dimension``."""
    return f"{dimension}-{task}.pdf"


# -- model report folder --------------------------------------------------------------------------
def task_table_name(suffix: str) -> str:
    """The task-level neuron statistics table of one model suffix."""
    return f"task_level_neuron_statistics_{suffix}.csv"


def cross_task_name(task_a: str, task_b: str) -> str:
    return f"cross_task-{task_a}-{task_b}.pdf"


def within_task_name(task: str) -> str:
    return f"within_task-{task}.pdf"


# -- comparison of models (python -m analysis compare) ------------------------------------------------
ENTROPY_DISTRIBUTION_PDF = "entropy_distribution.pdf"


def compare_table_name(models: list[str]) -> str:
    """The task table of several models side by side, e.g. ``task_level_neuron_statistics_analysis_vs_vit.csv``."""
    return f"task_level_neuron_statistics_{'_vs_'.join(models)}.csv"


def compare_cross_task_name(task_a: str, task_b: str) -> str:
    return f"compare_cross_task-{task_a}-{task_b}.pdf"


def compare_within_task_name(task: str) -> str:
    return f"compare_within_task-{task}.pdf"


def model_report_folder(runs_dir: str | os.PathLike, suffix: str) -> Path:
    """``<runs_dir>/report_<suffix>``: where ``python -m analysis report`` writes by default."""
    return Path(runs_dir) / f"report_{suffix}"


# -- the pipeline's report ------------------------------------------------------------------------
SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"
TASKS_CSV = "tasks.csv"
#: one row per ablated class set of the run: task, model, selector, class, its change, test and verdict
#: (analysis.app.verdicts; the contract table of docs/findings.md)
ABLATION_SUMMARY_CSV = "ablation_summary.csv"
#: every ablated set of the run: change [interval] vs random draws, specific and unstable sets marked
VERDICTS_PDF = "verdicts.pdf"
#: per model × task × class × k: the threshold-free ablation of each class's k lowest-entropy neurons
THRESHOLD_FREE_CSV = "threshold_free.csv"
#: our numbers next to the study's published ones
REPRODUCTION_CSV = "reproduction.csv"
#: per model × dimension × task × class: the share of the class's units whose preferred value lies in the
#: class's own range (e.g. octave sets and pitch), with its interval and the random-unit comparison
TUNING_RANGES_CSV = "tuning_ranges.csv"
