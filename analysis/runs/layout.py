"""Every file and folder name of aape's outputs. No other module spells one.

A **statistics run folder** ``<out>/<task>_<suffix>/`` is written by the statistics pass
(``trainer.predict`` + ``ActivationStatsCallback``) and grows as later steps add their files:

=====================  =========================================================================
``over_zero.pt``       float32 ``[L, N, C]`` P(activation > 0 | class); NaN = neuron absent
``classes.txt``        one class name per line, index order
``features.pt``        float32 ``[clips, E]`` clip embeddings, dataset order
``gts.pt``             int64 ``[clips]`` class index, or float32 multi-hot ``[clips, C]``
``stats.pt``           exactly mergeable counts (see :mod:`analysis.activation_stats`)
``index.csv``          ``row,index,file_name,label,split`` (row = row of features.pt)
``manifest.json``      provenance (config, checksums, world size, versions, seed, time)
``neurons.csv``        AAPE selection, one row per selected neuron (``identify``)
``neurons.pt``         class → layer → LongTensor of neuron ids (the LAPE mask list)
``neurons.json``       thresholds, counts and warnings of the selection
``stability.csv``      bootstrap stability per class (``stability``)
``threshold_sweep.csv``  set sizes over a grid of thresholds
``top_clips.pt``       each neuron's top-K clips (see below), written by the statistics pass
=====================  =========================================================================

``features.pt`` and ``gts.pt`` are written row block by row block in dataset order (the processes of a
DDP run spool their rows to disk while predicting; no process ever holds all embeddings), as ordinary
``torch.save`` files (readable with ``torch.load``, also with ``mmap=True``).

``top_clips.pt`` is a dict: ``score`` float32 ``[L, N, K]`` (the clip's mean activation of neuron
(l, n) over its counted positions, descending; -inf in empty slots), ``index`` int64 ``[L, N, K]``
(dataset index of the clip, column ``index`` of ``index.csv``; -1 = empty slot; equal scores ordered by
index), ``frame`` int64 ``[L, N, K]`` (first front-end frame of the clip's peak position for that
neuron, -1 when unknown), ``band`` int64 ``[L, N, K]`` (frequency band of the peak, -1 when the site
has none), ``k``, ``sites``, ``site_neurons``, ``frame_seconds`` (seconds per frame, or None),
``frames_per_position`` and ``n_bands``. Only counted clips (the identification splits) are candidates.

A **probe folder** holds ``probe_results.csv`` and ``probe_seed<seed>.ckpt``; an **ablation folder**
the files of :data:`ABLATION_FILES`; a **model report folder** the task table and overlap figures of one
model (:func:`task_table_name`, :func:`cross_task_name`, :func:`within_task_name`).

A **pipeline output tree** (:class:`OutputTree`) arranges all of them under one root.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# -- statistics run folder ------------------------------------------------------------------------
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

NEURONS_CSV = "neurons.csv"
NEURONS_PT = "neurons.pt"
NEURONS_JSON = "neurons.json"
NEURONS_FILES = (NEURONS_CSV, NEURONS_PT, NEURONS_JSON)
STABILITY_CSV = "stability.csv"

#: Private folder (beside the run folder) where one process of the statistics pass spools its rows
#: (embeddings, labels, dataset indices, split and file name) while predicting; removed at the end.
ROW_SPOOL_PREFIX = ".rows-"
#: Files of a row spool: raw float32 embeddings, raw labels, raw int64 dataset indices, JSON lines of
#: ``[split, file_name]`` and their int64 byte offsets.
SPOOL_EMBEDDING, SPOOL_LABEL, SPOOL_INDEX, SPOOL_META, SPOOL_META_OFFSETS = (
    "embedding.f32", "label.bin", "index.i64", "meta.jsonl", "meta.offsets.i64")
THRESHOLD_SWEEP_CSV = "threshold_sweep.csv"

# -- probe folder ---------------------------------------------------------------------------------
PROBE_RESULTS = "probe_results.csv"


def probe_checkpoint_name(seed: int | str) -> str:
    """File name of the best checkpoint of one probe seed."""
    return f"probe_seed{seed}.ckpt"


# -- ablation folder ------------------------------------------------------------------------------
ABLATION_CSV = "ablation.csv"
ABLATION_SUMMARY_CSV = "ablation_summary.csv"
ABLATION_CONDITIONS_JSON = "ablation_conditions.json"
ABLATION_MATRIX_PDF = "ablation_matrix.pdf"
ABLATION_K_CURVE_PDF = "ablation_k_curve.pdf"
ABLATION_FILES = (ABLATION_CSV, ABLATION_SUMMARY_CSV, ABLATION_MATRIX_PDF, ABLATION_K_CURVE_PDF,
                  ABLATION_CONDITIONS_JSON)


# -- model report folder --------------------------------------------------------------------------
def task_table_name(suffix: str) -> str:
    """The task-level neuron statistics table of one model suffix."""
    return f"task_level_neuron_statistics_{suffix}.csv"


def cross_task_name(task_a: str, task_b: str) -> str:
    return f"cross_task-{task_a}-{task_b}.pdf"


def within_task_name(task: str) -> str:
    return f"within_task-{task}.pdf"


def model_report_folder(runs_dir: str | os.PathLike, suffix: str) -> Path:
    """``<runs_dir>/report_<suffix>``: where ``python -m analysis report`` writes by default."""
    return Path(runs_dir) / f"report_{suffix}"


# -- the pipeline's report ------------------------------------------------------------------------
SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"
HEADLINE_CSV = "headline.csv"
TASKS_CSV = "tasks.csv"


def run_folder(out_dir: str | os.PathLike, task: str, suffix: str) -> Path:
    """``<out_dir>/<task>_<suffix>``: the statistics run folder of ``task`` and model ``suffix``."""
    return Path(out_dir) / f"{task}_{suffix}"


@dataclass(frozen=True)
class OutputTree:
    """The folders of a pipeline run under ``root``::

        evar/                     synthetic EVAR root (when the config asks for synthetic data)
        runs/<task>_<model>/      statistics run folders (+ neurons.*, stability.csv, threshold_sweep.csv)
        models/<model>/           task table and cross-/within-task figures of one model
        probes/<task>_<model>/    probe_results.csv, probe_seed<seed>.ckpt
        ablation/<task>_<model>/  the ablation files
        report/                   summary.md, index.html, headline.csv, tasks.csv
        tensorboard/              TensorBoard logs of every stage
        .stages/                  finished-stage markers (and configs of subprocess stages)
        .staging/                 private folders a stage writes into before one rename
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, task: str, model: str) -> Path:
        return run_folder(self.runs, task, model)

    def probe(self, task: str, model: str) -> Path:
        return self.root / "probes" / f"{task}_{model}"

    def ablation(self, task: str, model: str) -> Path:
        return self.root / "ablation" / f"{task}_{model}"

    def model_report(self, model: str) -> Path:
        return self.root / "models" / model

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def synthetic_evar_root(self) -> Path:
        return self.root / "evar"

    @property
    def stages(self) -> Path:
        return self.root / ".stages"

    def staging(self, task: str, model: str) -> Path:
        return self.root / ".staging" / f"{task}_{model}"
