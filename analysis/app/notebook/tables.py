"""The tables of the notebook API, read from a run's files: one row per neuron (:func:`neurons_frame`), per
class set (:func:`class_sets_frame`) and per top clip of a neuron (:func:`top_clips_frame`).

A **unit** is one neuron of one model: ``(layer, neuron)``, the gallery's ``"layer:neuron"``, or a row of
:func:`neurons_frame` (which also names its task and model)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from analysis.aape import absent_neurons, entropy, normalise, normalised_entropy
from analysis.gallery import peak_seconds
from analysis.app.notebook.folders import RunFolders
from analysis.app.summary import HEADLINE_COLUMNS, headline_rows, neurons_per_class
from analysis.runs.layout import ABLATION_CSV, NEURONS_CSV
from analysis.runs.read import read_index, read_run, read_stability, read_table, read_top_clips

#: Columns of :func:`neurons_frame` before the per-class probabilities ``p_<class>``.
NEURON_COLUMNS = [
    "task",
    "model",
    "unit",
    "layer",
    "site",
    "neuron",
    "entropy",
    "normalised_entropy",
    "selected",
    "rank",
    "classes",
    "n_classes",
]
#: Class-set columns joined onto the neurons of exactly one class set (see :func:`neurons_frame`).
SET_COLUMNS = {
    "neurons": "set_size",
    "stability_mean_jaccard": "set_stability",
    "stability_jaccard_lo": "set_stability_lo",
    "stability_jaccard_hi": "set_stability_hi",
    "on_target_delta": "ablation_delta",
    "random_delta_mean": "random_delta_mean",
    "random_delta_lo": "random_delta_lo",
    "random_delta_hi": "random_delta_hi",
    "specific": "ablation_specific",
}
TOP_CLIP_COLUMNS = ["rank", "score", "index", "file_name", "label", "split", "frame", "band", "peak_seconds"]


def parse_unit(unit: Any) -> tuple[Optional[str], Optional[str], int, int]:
    """``(task, model, layer, neuron)`` of a unit (task and model None unless the unit names them).

    >>> parse_unit("5:23"), parse_unit((1, 2)), parse_unit({"task": "t", "model": "m", "layer": 0, "neuron": 7})
    ((None, None, 5, 23), (None, None, 1, 2), ('t', 'm', 0, 7))
    """
    if isinstance(unit, str):
        parts = unit.split(":")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"unit {unit!r}: expected 'layer:neuron', e.g. '5:23'")
        return None, None, int(parts[0]), int(parts[1])
    if isinstance(unit, (Mapping, pd.Series)):
        get = unit.get
        return (get("task"), get("model"), int(get("layer")), int(get("neuron")))
    if isinstance(unit, (tuple, list)) and len(unit) == 2:
        return None, None, int(unit[0]), int(unit[1])
    raise ValueError(f"unit {unit!r}: expected (layer, neuron), 'layer:neuron' or a row of neurons()")


def _selection(folders: RunFolders) -> pd.DataFrame:
    p = folders.run / NEURONS_CSV
    if not p.is_file():
        return pd.DataFrame(columns=["layer", "neuron", "rank", "classes", "n_classes"])
    t = read_table(p)
    t["classes"] = t["classes"].fillna("").astype(str)
    return t[["layer", "neuron", "rank", "classes", "n_classes"]]


def class_sets_frame(folders: RunFolders) -> pd.DataFrame:
    """One row per class (columns :data:`~analysis.app.summary.HEADLINE_COLUMNS`, the report's per-class
    table): the size of the class's AAPE set, its bootstrap stability and, when the ablation ran, the change
    in the class's recall when the set is zeroed against its matched random sets. Without ``neurons.pt``:
    no rows."""
    if folders.ablation is not None:
        return headline_rows(folders.model, folders.task, folders.run, folders.ablation / ABLATION_CSV)
    try:
        counts = neurons_per_class(folders.run)
    except FileNotFoundError:
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    st = read_stability(folders.run)
    st = st.set_index("class") if st is not None else None
    rows = []
    for c, n in counts.items():
        row = {k: math.nan for k in HEADLINE_COLUMNS}
        row.update(model=folders.model, task=folders.task, neurons=n, random_draws=0, specific=False)
        row["class"] = c
        if st is not None and c in st.index and n:
            row.update(
                stability_mean_jaccard=float(st.loc[c, "mean_jaccard"]),
                stability_jaccard_lo=float(st.loc[c, "jaccard_low"]),
                stability_jaccard_hi=float(st.loc[c, "jaccard_high"]),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def neurons_frame(folders: RunFolders) -> pd.DataFrame:
    """One row per neuron of the model present at its site (:data:`NEURON_COLUMNS`, then ``p_<class>``: the
    activation probability ``P(activation > 0 | class)`` of ``over_zero.pt``, then the class-set columns).

    ``entropy`` is the Shannon entropy of the neuron's class distribution (the probabilities normalised over
    classes, as AAPE ranks them), ``normalised_entropy`` the same divided by ln C (NaN for a neuron that never
    fires). ``selected``/``rank``/``classes`` come from ``neurons.csv`` (``classes``: the classes the neuron is
    assigned to, ';'-joined). A neuron in exactly one class set carries that set's size, stability
    (``stability.csv``) and ablation effect (``ablation.csv``, against matched random sets) in the columns of
    :data:`SET_COLUMNS`; a neuron in several sets has NaN there (see :func:`class_sets_frame`)."""
    run = read_run(folders.run, stats=False)
    p = run.over_zero.float()  # [L, N, C]
    present = ~absent_neurons(p)
    layer, neuron = (t.numpy() for t in present.nonzero(as_tuple=True))
    h = entropy(normalise(p)).abs()[present].numpy()
    dead = np.isnan(normalised_entropy(p)[present].numpy())
    h = np.where(dead, np.nan, h)
    df = pd.DataFrame(
        {
            "task": folders.task,
            "model": folders.model,
            "unit": [f"{l}:{n}" for l, n in zip(layer, neuron)],
            "layer": layer,
            "site": [run.sites[l] for l in layer],
            "neuron": neuron,
            "entropy": h,
            "normalised_entropy": normalised_entropy(p)[present].numpy(),
        }
    )
    df = df.merge(_selection(folders), on=["layer", "neuron"], how="left")
    df["selected"] = df["rank"].notna()
    df["classes"] = df["classes"].fillna("")
    df["n_classes"] = df["n_classes"].fillna(0).astype(int)
    probs = p[present].numpy()
    for j, c in enumerate(run.classes):
        df[f"p_{c}"] = probs[:, j]
    sets = class_sets_frame(folders).set_index("class")
    single = df["n_classes"] == 1
    for src, dst in SET_COLUMNS.items():
        values = df["classes"].map(sets[src]) if len(sets) else pd.Series(np.nan, index=df.index)
        values = values.where(single)
        df[dst] = values.astype("boolean") if src == "specific" else values.astype(float)
    cols = NEURON_COLUMNS + [f"p_{c}" for c in run.classes] + list(SET_COLUMNS.values())
    return df[cols].sort_values(["layer", "neuron"], kind="stable").reset_index(drop=True)


def top_clips_frame(folders: RunFolders, layer: int, neuron: int) -> pd.DataFrame:
    """The top clips of neuron ``(layer, neuron)`` from ``top_clips.pt``, best first (:data:`TOP_CLIP_COLUMNS`):
    its mean activation over the clip (``score``), the clip (dataset ``index``, ``file_name``, ``label``,
    ``split`` from ``index.csv``), the peak's front-end ``frame`` and frequency ``band`` (-1 when unknown) and
    the centre of the peak's position in seconds (NaN when unknown). Empty slots are left out."""
    top = read_top_clips(folders.run)
    L, N, _ = top["score"].shape
    if not (0 <= layer < L and 0 <= neuron < N):
        raise IndexError(f"{folders.run}: unit {layer}:{neuron} outside the model's [{L} layers, {N} neurons]")
    idx = top["index"][layer, neuron]
    keep = idx >= 0
    fs, fpp = top.get("frame_seconds"), int(top.get("frames_per_position") or 1)
    frame = top["frame"][layer, neuron][keep].numpy()
    df = pd.DataFrame(
        {
            "rank": np.arange(1, int(keep.sum()) + 1),
            "score": top["score"][layer, neuron][keep].numpy(),
            "index": idx[keep].numpy(),
            "frame": frame,
            "band": top["band"][layer, neuron][keep].numpy(),
        }
    )
    df["peak_seconds"] = [peak_seconds(int(f), float(fs), fpp) if fs and f >= 0 else math.nan for f in frame]
    index = read_index(folders.run).set_index("index")[["file_name", "label", "split"]]
    df = df.join(index, on="index")
    return df[TOP_CLIP_COLUMNS]
