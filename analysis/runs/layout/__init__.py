"""Every file and folder name of aape's outputs. No other module spells one (the names are defined in the
submodules, one per kind of folder, and imported here: import them from ``analysis.runs.layout``).

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

from analysis.runs.layout.statistics_folder import (
    OVER_ZERO,
    CLASSES,
    FEATURES,
    GTS,
    STATS,
    INDEX,
    MANIFEST,
    TOP_CLIPS,
    RUN_FILES,
    INDEX_COLUMNS,
    SPLITS,
    NO_SPLIT,
    INDEX_SPLITS,
    NEURONS_CSV,
    NEURONS_PT,
    NEURONS_JSON,
    NEURONS_FILES,
    STABILITY_CSV,
    ROW_SPOOL_PREFIX,
    SPOOL_EMBEDDING,
    SPOOL_LABEL,
    SPOOL_INDEX,
    SPOOL_META,
    SPOOL_META_OFFSETS,
    THRESHOLD_SWEEP_CSV,
    run_folder,
)
from analysis.runs.layout.sae_folder import (
    SAE_FILE,
    SAE_METRICS_CSV,
    SAE_METRICS_COLUMNS,
    SAE_CACHE_DIR,
    NEURONS_VS_FEATURES_CSV,
    NEURONS_VS_FEATURES_COLUMNS,
    sae_cache_file,
    site_slug,
)
from analysis.runs.layout.temp_names import (
    TEMP_TAG,
    TEMP_SUFFIX,
    temp_prefix,
    is_temp_name,
)
from analysis.runs.layout.gallery_folder import (
    GALLERY_DIR,
    GALLERY_JSON,
    GALLERY_NEURONS_DIR,
    GALLERY_IMAGES_DIR,
    GALLERY_AUDIO_DIR,
    GALLERY_LOOKUP_JS,
    gallery_neuron_page,
    gallery_image,
    gallery_audio,
)
from analysis.runs.layout.result_folders import (
    figure_preview,
    PROBE_RESULTS,
    probe_checkpoint_name,
    ABLATION_CSV,
    ABLATION_GROUPS_CSV,
    ABLATION_SUMMARY_CSV,
    ABLATION_CONDITIONS_JSON,
    ABLATION_MATRIX_PDF,
    ABLATION_K_CURVE_PDF,
    ABLATION_CONFUSION_CSV,
    ABLATION_CONFUSION_PDF,
    ABLATION_FILES,
    confusion_figure_name,
    TUNING_DIR,
    STEERING_CSV,
    STEERING_PDF,
    tuning_csv,
    tuning_pt,
    tuning_figure_name,
    task_table_name,
    cross_task_name,
    within_task_name,
    ENTROPY_DISTRIBUTION_PDF,
    compare_table_name,
    compare_cross_task_name,
    compare_within_task_name,
    model_report_folder,
    SUMMARY_MD,
    INDEX_HTML,
    TASKS_CSV,
    VERDICTS_PDF,
    THRESHOLD_FREE_CSV,
    REPRODUCTION_CSV,
    TUNING_RANGES_CSV,
)
from analysis.runs.layout.output_tree import (
    OutputTree,
)

__all__ = [
    "OVER_ZERO",
    "CLASSES",
    "FEATURES",
    "GTS",
    "STATS",
    "INDEX",
    "MANIFEST",
    "TOP_CLIPS",
    "RUN_FILES",
    "INDEX_COLUMNS",
    "SPLITS",
    "NO_SPLIT",
    "INDEX_SPLITS",
    "NEURONS_CSV",
    "NEURONS_PT",
    "NEURONS_JSON",
    "NEURONS_FILES",
    "STABILITY_CSV",
    "ROW_SPOOL_PREFIX",
    "SPOOL_EMBEDDING",
    "SPOOL_LABEL",
    "SPOOL_INDEX",
    "SPOOL_META",
    "SPOOL_META_OFFSETS",
    "THRESHOLD_SWEEP_CSV",
    "run_folder",
    "SAE_FILE",
    "SAE_METRICS_CSV",
    "SAE_METRICS_COLUMNS",
    "SAE_CACHE_DIR",
    "NEURONS_VS_FEATURES_CSV",
    "NEURONS_VS_FEATURES_COLUMNS",
    "sae_cache_file",
    "site_slug",
    "TEMP_TAG",
    "TEMP_SUFFIX",
    "temp_prefix",
    "is_temp_name",
    "GALLERY_DIR",
    "GALLERY_JSON",
    "GALLERY_NEURONS_DIR",
    "GALLERY_IMAGES_DIR",
    "GALLERY_AUDIO_DIR",
    "GALLERY_LOOKUP_JS",
    "gallery_neuron_page",
    "gallery_image",
    "gallery_audio",
    "figure_preview",
    "PROBE_RESULTS",
    "probe_checkpoint_name",
    "ABLATION_CSV",
    "ABLATION_GROUPS_CSV",
    "ABLATION_SUMMARY_CSV",
    "ABLATION_CONDITIONS_JSON",
    "ABLATION_MATRIX_PDF",
    "ABLATION_K_CURVE_PDF",
    "ABLATION_CONFUSION_CSV",
    "ABLATION_CONFUSION_PDF",
    "ABLATION_FILES",
    "confusion_figure_name",
    "TUNING_DIR",
    "STEERING_CSV",
    "STEERING_PDF",
    "tuning_csv",
    "tuning_pt",
    "tuning_figure_name",
    "task_table_name",
    "cross_task_name",
    "within_task_name",
    "ENTROPY_DISTRIBUTION_PDF",
    "compare_table_name",
    "compare_cross_task_name",
    "compare_within_task_name",
    "model_report_folder",
    "SUMMARY_MD",
    "INDEX_HTML",
    "TASKS_CSV",
    "VERDICTS_PDF",
    "THRESHOLD_FREE_CSV",
    "REPRODUCTION_CSV",
    "TUNING_RANGES_CSV",
    "OutputTree",
]
