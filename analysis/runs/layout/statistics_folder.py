"""Names of a statistics run folder ``<out>/<task>_<suffix>/``: the files the statistics pass writes, the
selection and stability files later steps add, and the private row spools of the pass (see
:mod:`analysis.runs.layout`)."""

from __future__ import annotations

import os
from pathlib import Path

OVER_ZERO = "over_zero.pt"
CLASSES = "classes.txt"
FEATURES = "features.pt"
GTS = "gts.pt"
STATS = "stats.pt"
INDEX = "index.csv"
MANIFEST = "manifest.json"
TOP_CLIPS = "top_clips.pt"
#: The files the statistics pass writes together (one folder rename); ``features.pt`` is absent when the
#: pass ran with ``features: false``, ``top_clips.pt`` when it ran with ``top_k: 0``.
RUN_FILES = (OVER_ZERO, CLASSES, FEATURES, GTS, STATS, INDEX, MANIFEST, TOP_CLIPS)
INDEX_COLUMNS = ["row", "index", "file_name", "label", "split"]
SPLITS = ("train", "valid", "test")
#: ``split`` of a clip whose metadata row has no split (predicted and counted only when the identification
#: uses every clip, ``identify_splits: all``); never used by the probe.
NO_SPLIT = "none"
#: Every value the ``split`` column of ``index.csv`` may hold.
INDEX_SPLITS = SPLITS + (NO_SPLIT,)

NEURONS_CSV = "neurons.csv"
NEURONS_PT = "neurons.pt"
NEURONS_JSON = "neurons.json"
NEURONS_FILES = (NEURONS_CSV, NEURONS_PT, NEURONS_JSON)
STABILITY_CSV = "stability.csv"

#: Private folder (beside the run folder) where one process of the statistics pass spools its rows
#: (embeddings, labels, dataset indices, split and file name) while predicting; removed at the end.
ROW_SPOOL_PREFIX = "rows-"
#: Files of a row spool: raw float32 embeddings, raw labels, raw int64 dataset indices, JSON lines of
#: ``[split, file_name]`` and their int64 byte offsets.
SPOOL_EMBEDDING, SPOOL_LABEL, SPOOL_INDEX, SPOOL_META, SPOOL_META_OFFSETS = (
    "embedding.f32",
    "label.bin",
    "index.i64",
    "meta.jsonl",
    "meta.offsets.i64",
)
THRESHOLD_SWEEP_CSV = "threshold_sweep.csv"


def run_folder(out_dir: str | os.PathLike, task: str, suffix: str) -> Path:
    """``<out_dir>/<task>_<suffix>``: the statistics run folder of ``task`` and model ``suffix``."""
    return Path(out_dir) / f"{task}_{suffix}"
