"""The study's published numbers next to ours: the reproduction table of the report.

:data:`PUBLISHED` holds every number the study (arXiv 2602.15307) and its released ablation configs (EVAR
commit adb5588, ``config/m2d_abl_neuron1.yaml`` for CREMA-D, ``m2d_abl_neuron2.yaml`` for GTZAN) give for
the quantities this pipeline computes, each with its source. :func:`reproduction_table` puts our value
beside each one whose model and task the pipeline ran (the study's M2D is the model named ``analysis``, as
in ``configs/pipeline/paper_m2d.yaml``); published rows the run cannot compute are left out.

Quantities:

* ``neurons_per_class`` — mean AAPE neurons per class of a task (``tasks.csv``).
* ``shared_neurons`` — size of the intersection of two classes' AAPE sets (our ``shared:<a>&<b>``
  condition in ``ablation_conditions.json``) vs the size of the published list.
* ``ablation_delta_pt`` — change of a class's test accuracy (recall) in percentage points when the
  published neuron list (our condition of that name) is zeroed, probe trained on clean features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from analysis.runs.layout import ABLATION_CSV
from analysis.runs.read import read_ablation_conditions, read_table

SOURCE_PAPER = "arXiv 2602.15307 (Kawamura, Niizumi, Ono), text"
SOURCE_CREMAD = "EVAR adb5588 config/m2d_abl_neuron1.yaml (per-class results in the config), arXiv 2602.15307"
SOURCE_GTZAN = "EVAR adb5588 config/m2d_abl_neuron2.yaml (per-class results in the config), arXiv 2602.15307"
COLUMNS = ["quantity", "model", "task", "detail", "ours", "study", "difference", "source"]


@dataclass(frozen=True)
class Published:
    """One published number: ``quantity`` (module docstring), the study's ``model`` (our model name),
    ``task``, ``detail`` (class, ``<list>:<class>`` or ``<a>&<b>``), ``value`` and its ``source``."""

    quantity: str
    model: str
    task: str
    detail: str
    value: float
    source: str


PUBLISHED: list[Published] = [
    Published("neurons_per_class", "analysis", "cremad", "mean over classes", 172.0, SOURCE_PAPER),
    Published("neurons_per_class", "analysis", "esc50", "mean over classes", 37.9, SOURCE_PAPER),
    Published("shared_neurons", "analysis", "cremad", "ANG&HAP", 22, SOURCE_CREMAD),
    Published("shared_neurons", "analysis", "gtzan", "jazz&classical", 26, SOURCE_GTZAN),
    Published("ablation_delta_pt", "analysis", "cremad", "cremad_ang_hap:ANG", -1.51, SOURCE_CREMAD),
    Published("ablation_delta_pt", "analysis", "cremad", "cremad_ang_hap:HAP", -0.38, SOURCE_CREMAD),
    Published("ablation_delta_pt", "analysis", "gtzan", "gtzan_classical_jazz:classical", 0.0, SOURCE_GTZAN),
    Published("ablation_delta_pt", "analysis", "gtzan", "gtzan_classical_jazz:jazz", 0.0, SOURCE_GTZAN),
]


def _ours(pub: Published, tasks: pd.DataFrame, ablation_dir: Optional[Path], aliases: Mapping[str, str]) -> float:
    """Our value of ``pub`` (NaN when the run has no such number)."""
    if pub.quantity == "neurons_per_class":
        row = tasks[(tasks["model"] == pub.model) & (tasks["task"] == pub.task)]
        return float(row["neurons_per_class"].iloc[0]) if len(row) else math.nan
    if ablation_dir is None or not (ablation_dir / ABLATION_CSV).is_file():
        return math.nan
    if pub.quantity == "shared_neurons":
        name = "shared:" + "&".join(aliases.get(c, c) for c in pub.detail.split("&"))
        conds = {c["name"]: c for c in read_ablation_conditions(ablation_dir)["conditions"]}
        return float(len(conds[name]["neurons"])) if name in conds else math.nan
    condition, cls = pub.detail.split(":")
    t = read_table(ablation_dir / ABLATION_CSV)
    row = t[(t["condition"] == condition) & (t["class"] == aliases.get(cls, cls))]
    return 100.0 * float(row["delta"].iloc[0]) if len(row) else math.nan


def reproduction_table(
    tasks: pd.DataFrame,
    ablation_dirs: Mapping[tuple[str, str], Path],
    aliases: Optional[Mapping[str, Mapping[str, str]]] = None,
    published: Optional[list[Published]] = None,
) -> pd.DataFrame:
    """One row per published number whose (model, task) the run holds: ``ours`` beside ``study`` and
    their ``difference`` (ours − study), with the source. ``tasks``: the summary's task table;
    ``ablation_dirs``: (model, task) → ablation folder; ``aliases``: task → the run's names of the study's
    classes (``class_aliases`` of the pipeline's tasks)."""
    aliases = aliases or {}
    rows = []
    present = set(zip(tasks["model"], tasks["task"]))
    for pub in published if published is not None else PUBLISHED:
        if (pub.model, pub.task) not in present:
            continue
        ours = _ours(pub, tasks, ablation_dirs.get((pub.model, pub.task)), aliases.get(pub.task) or {})
        rows.append(
            dict(
                quantity=pub.quantity,
                model=pub.model,
                task=pub.task,
                detail=pub.detail,
                ours=ours,
                study=float(pub.value),
                difference=ours - float(pub.value),
                source=pub.source,
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)
