"""Every file and folder name of aape's outputs. No other module spells one.

A **statistics run folder** ``<out>/<task>_<suffix>/`` is written by the statistics pass
(``trainer.predict`` + ``ActivationStatsCallback``) and grows as later steps add their files:

=====================  =========================================================================
``over_zero.pt``       float32 ``[L, N, C]`` P(activation > 0 | class); NaN = neuron absent
``classes.txt``        one class name per line, index order
``features.pt``        float32 ``[clips, E]`` clip embeddings, dataset order
``gts.pt``             int64 ``[clips]`` class index, or float32 multi-hot ``[clips, C]``
``stats.pt``           exactly mergeable counts (see :mod:`analysis.activation_stats`)
``index.csv``          ``row,index,file_name,label,split`` (row = row of features.pt; split is
                       train/valid/test, or ``none`` for a clip without a split)
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

A **gallery folder** (``gallery/`` of a run folder, or ``gallery/<task>_<model>/`` of a pipeline output
tree) is the static listening gallery of one run (``python -m analysis gallery``): ``index.html`` (classes →
neurons, lookup by ``layer:index``), ``neurons/`` (one page per neuron, :func:`gallery_neuron_page`),
``images/`` (spectrogram + activation overlay per top clip, :func:`gallery_image`), ``audio/`` (16-bit WAV
excerpts, :func:`gallery_audio`), ``lookup.js`` (every neuron's top clips, for the lookup box) and
``gallery.json`` (what was built, from which run).

Figures written as PDF get a PNG preview beside them (:func:`figure_preview`) for web pages.

A **probe folder** holds ``probe_results.csv`` and ``probe_seed<seed>.ckpt``; an **ablation folder**
the files of :data:`ABLATION_FILES`; a **model report folder** the task table and overlap figures of one
model (:func:`task_table_name`, :func:`cross_task_name`, :func:`within_task_name`); a **comparison
folder** the same for several models side by side (:func:`compare_table_name`,
:func:`compare_cross_task_name`, :func:`compare_within_task_name`, :data:`ENTROPY_DISTRIBUTION_PDF`).

A **pipeline output tree** (:class:`OutputTree`) arranges all of them under one root.

**Temporary files.** Every atomic write goes through a temporary sibling named by :func:`temp_prefix`
(``.<final name>.aape-<random>.tmp``, a file or a folder) that is renamed into place; a process killed
mid-write leaves only such a name behind, never a half-written result under its final name.
:func:`is_temp_name` recognises them so a later run can remove them.
"""

from __future__ import annotations

import os
import re
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

# -- sparse-autoencoder folder ------------------------------------------------------------------------
#: An **SAE folder** (``saes/<model>/<site>/`` of a pipeline output tree, :meth:`OutputTree.sae`) holds one
#: trained sparse autoencoder: ``sae.pt`` (weights + config, :mod:`lightning_modules.sparse_autoencoder`)
#: and ``metrics.csv`` (one row, :data:`SAE_METRICS_COLUMNS`, measured on held-out clips).
SAE_FILE = "sae.pt"
SAE_METRICS_CSV = "metrics.csv"
SAE_METRICS_COLUMNS = [
    "site",
    "d_sae",
    "k",
    "fve",
    "l0",
    "dead_fraction",
    "mse",
    "architecture",
    "rows",
    "train_rows",
    "steps",
    "seconds",
]
#: Activation rows cached on disk by an SAE training run (one file per process and batch).
SAE_CACHE_DIR = "activation_cache"
#: The neurons-vs-features table of a comparison folder (``compare/``).
NEURONS_VS_FEATURES_CSV = "neurons_vs_features.csv"
NEURONS_VS_FEATURES_COLUMNS = [
    "task",
    "model",
    "site",
    "unit_kind",
    "units",
    "specific_units",
    "mean_jaccard",
    "mean_on_target_delta",
    "on_target_delta_per_unit",
    "off_target_delta_per_unit",
    "median_normalized_entropy",
    "feature_model",
]


def sae_cache_file(rank: int, batch: int) -> str:
    """A cached batch of activation rows, relative to the cache folder."""
    return f"rank{rank}/batch{batch:06d}.pt"


def site_slug(site: str) -> str:
    """A site's module path as a folder name.

    >>> site_slug("blocks.5.relu")
    'blocks.5.relu'
    >>> site_slug("encoder/blocks 5")
    'encoder_blocks_5'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", site)


# -- temporary files of atomic writes -----------------------------------------------------------
TEMP_TAG = ".aape-"
TEMP_SUFFIX = ".tmp"


def temp_prefix(name: str) -> str:
    """Prefix of the temporary sibling of ``name`` while it is being written (``.<name>.aape-``)."""
    return f".{name}{TEMP_TAG}"


#: Temporary names of earlier versions (``tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")``).
_LEGACY_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temp_name(name: str) -> bool:
    """True for the temporary file/folder names of this project's atomic writes (:func:`temp_prefix`, and
    the ``.<name>.<8 random characters>.tmp`` of earlier versions).

    >>> is_temp_name(".over_zero.pt.aape-k2j4x9q1.tmp"), is_temp_name(".stats.pt.ab12cd34.tmp"), is_temp_name("x.tmp")
    (True, True, False)
    """
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    return TEMP_TAG in name or _LEGACY_TEMP.fullmatch(name) is not None


# -- gallery folder -------------------------------------------------------------------------------
GALLERY_DIR = "gallery"
GALLERY_JSON = "gallery.json"
GALLERY_NEURONS_DIR = "neurons"
GALLERY_IMAGES_DIR = "images"
GALLERY_AUDIO_DIR = "audio"
#: Every neuron's top clips as JavaScript data, loaded by the gallery's lookup box on demand.
GALLERY_LOOKUP_JS = "lookup.js"


def gallery_neuron_page(layer: int, neuron: int) -> str:
    """Path of a neuron's page, relative to the gallery folder."""
    return f"{GALLERY_NEURONS_DIR}/l{layer}_n{neuron}.html"


def gallery_image(layer: int, neuron: int, rank: int) -> str:
    """Path of the spectrogram + activation image of a neuron's ``rank``-th top clip (0-based), relative to
    the gallery folder."""
    return f"{GALLERY_IMAGES_DIR}/l{layer}_n{neuron}_r{rank}.png"


def gallery_audio(index: int, start_ms: int, stop_ms: int) -> str:
    """Path of the WAV excerpt ``[start_ms, stop_ms)`` of dataset clip ``index``, relative to the gallery
    folder (clips shared by several neurons with the same excerpt are written once)."""
    return f"{GALLERY_AUDIO_DIR}/clip{index}_{start_ms}-{stop_ms}ms.wav"


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
ABLATION_SUMMARY_CSV = "ablation_summary.csv"
ABLATION_CONDITIONS_JSON = "ablation_conditions.json"
ABLATION_MATRIX_PDF = "ablation_matrix.pdf"
ABLATION_K_CURVE_PDF = "ablation_k_curve.pdf"
#: per condition × true class × predicted class counts (non-zero ones), see analysis.ablation.confusion_table
ABLATION_CONFUSION_CSV = "ablation_confusion.csv"
#: change in confusion vs baseline of the chosen conditions
ABLATION_CONFUSION_PDF = "ablation_confusion.pdf"
ABLATION_FILES = (
    ABLATION_CSV,
    ABLATION_SUMMARY_CSV,
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
#: every ablated set of the run: change [interval] vs random draws, specific and unstable sets marked
VERDICTS_PDF = "verdicts.pdf"
#: per model × task × class × k: the threshold-free ablation of each class's k lowest-entropy neurons
THRESHOLD_FREE_CSV = "threshold_free.csv"
#: our numbers next to the study's published ones
REPRODUCTION_CSV = "reproduction.csv"
#: per model × dimension × task × class: the share of the class's units whose preferred value lies in the
#: class's own range (e.g. octave sets and pitch), with its interval and the random-unit comparison
TUNING_RANGES_CSV = "tuning_ranges.csv"


def run_folder(out_dir: str | os.PathLike, task: str, suffix: str) -> Path:
    """``<out_dir>/<task>_<suffix>``: the statistics run folder of ``task`` and model ``suffix``."""
    return Path(out_dir) / f"{task}_{suffix}"


@dataclass(frozen=True)
class OutputTree:
    """The folders of a pipeline run under ``root``::

    evar/                     synthetic EVAR root (when the config asks for synthetic data)
    runs/<task>_<model>/      statistics run folders (+ neurons.*, stability.csv, threshold_sweep.csv)
    models/<model>/           task table and cross-/within-task figures of one model
    models/<model>/tuning/    tuning curves per stimulus dimension (<dimension>.pt/.csv, figures)
    models/<model>/steering.csv  steering curves (gain grid) of every task's class sets
    stimuli/                  EVAR root of the tuning stimulus sets (tuning_<dimension>)
    steering/<task>_<model>/  steering.csv, steering.pdf of one task (gain grid on each class set)
    compare/                  the models side by side (pipelines with two or more models)
    probes/<task>_<model>/    probe_results.csv, probe_seed<seed>.ckpt
    ablation/<task>_<model>/  the ablation files
    gallery/<task>_<model>/   listening gallery of one run (index.html, neurons/, images/, audio/)
    saes/<model>/<site>/      a trained sparse autoencoder (sae.pt, metrics.csv, activation_cache/)
    report/                   summary.md, index.html, ablation_summary.csv (every ablated set's verdict),
                              tasks.csv, threshold_free.csv,
                              reproduction.csv
    tensorboard/              TensorBoard logs of every stage
    .stages/                  stage markers: <stage>-<key>.json when finished, <stage>-<key>.running.json
                              while running (left behind by an interrupted stage); configs of subprocess stages
    .staging/                 private folders a stage writes into before one rename
    .pipeline.lock            held (flock) by the pipeline writing into this tree
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
        return self.probes / f"{task}_{model}"

    def ablation(self, task: str, model: str) -> Path:
        return self.ablations / f"{task}_{model}"

    def gallery(self, task: str, model: str) -> Path:
        return self.galleries / f"{task}_{model}"

    @property
    def saes(self) -> Path:
        return self.root / "saes"

    def sae(self, model: str, site: str) -> Path:
        """The SAE folder of ``model``'s site ``site``."""
        return self.saes / model / site_slug(site)

    @property
    def galleries(self) -> Path:
        return self.root / GALLERY_DIR

    def model_report(self, model: str) -> Path:
        return self.models / model

    def tuning(self, model: str) -> Path:
        """``models/<model>/tuning/``: the tuning tables, curves and figures of one model."""
        return self.models / model / TUNING_DIR

    def steering(self, model: str) -> Path:
        """``models/<model>/steering.csv``."""
        return self.models / model / STEERING_CSV

    def steering_run(self, task: str, model: str) -> Path:
        """``steering/<task>_<model>/``: the steering pass of one task (``steering.csv``, ``steering.pdf``)."""
        return self.root / "steering" / f"{task}_{model}"

    @property
    def stimuli(self) -> Path:
        """The EVAR root of the tuning stimulus sets (never the user's EVAR root)."""
        return self.root / "stimuli"

    @property
    def probes(self) -> Path:
        return self.root / "probes"

    @property
    def ablations(self) -> Path:
        return self.root / "ablation"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def folders(self) -> list[Path]:
        """Every folder the pipeline writes into (what it may clean up; nothing else under ``root``)."""
        return [
            self.runs,
            self.models,
            self.compare,
            self.probes,
            self.ablations,
            self.galleries,
            self.report,
            self.saes,
            self.synthetic_evar_root,
            self.stimuli,
            self.root / "steering",
            self.stages,
            self.staging_root,
        ]

    @property
    def compare(self) -> Path:
        return self.root / "compare"

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
        return self.staging_root / f"{task}_{model}"

    @property
    def staging_root(self) -> Path:
        return self.root / ".staging"

    @property
    def lock(self) -> Path:
        """The lock file a running pipeline holds (one pipeline per output tree at a time)."""
        return self.root / ".pipeline.lock"

    def stage_marker(self, stage_id: str) -> Path:
        """Marker of a finished stage (its config hash and outputs)."""
        return self.stages / f"{stage_id}.json"

    def stage_running(self, stage_id: str) -> Path:
        """Marker of a stage that started and has not finished (present after an interruption)."""
        return self.stages / f"{stage_id}.running.json"
