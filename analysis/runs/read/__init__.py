"""Readers of aape's outputs (file names: :mod:`analysis.runs.layout`), one submodule per kind of folder,
all imported here (import them from ``analysis.runs.read``).

Every ``torch.load`` of the project happens in :func:`load_tensor_file` (:mod:`.loaders`): run-folder files,
probe and Lightning checkpoints and the encoders' weight files. It always uses ``weights_only=True`` (tensors
and plain containers only, plus the explicit allow-list a format needs, e.g. ``argparse.Namespace`` for
M2D training checkpoints), so a file cannot run code when read. Every reader raises ``ValueError`` /
``FileNotFoundError`` naming the file and the problem (:class:`UnreadableFileError` for a file that is
not a readable PyTorch file: text, truncated, corrupt; :class:`UnsafeFileError` for one holding other
pickled objects).

* :mod:`.loaders`: the safe loaders (tensor files, UTF-8 text, result CSVs)
* :mod:`.statistics_folder`: a statistics run folder (:class:`Run`, :func:`read_run`, :func:`find_runs`, its files)
* :mod:`.features`: its embeddings, labels and splits (:class:`Features`)
* :mod:`.selection`: the AAPE selection (``neurons.*``) and its stability
* :mod:`.checkpoints`: a probe folder and Lightning checkpoints
* :mod:`.tuning`: a tuning folder
* :mod:`.ablation`: an ablation folder
* :mod:`.sae`: a sparse-autoencoder folder
"""

from __future__ import annotations

from analysis.runs.read.loaders import (
    UnreadableFileError,
    UnsafeFileError,
    refused_global,
    refusal_message,
    load_tensor_file,
    read_table,
)
from analysis.runs.read.statistics_folder import (
    read_classes,
    read_over_zero,
    read_stats,
    read_top_clips,
    read_index,
    read_manifest,
    Run,
    task_of,
    read_run,
    find_runs,
)
from analysis.runs.read.features import (
    Features,
    read_features,
)
from analysis.runs.read.selection import (
    read_neurons,
    read_ranking,
    count_selected,
    selection_warnings,
    read_stability,
)
from analysis.runs.read.checkpoints import (
    read_probe_results,
    best_checkpoint,
    read_checkpoint_epoch,
    read_lightning_checkpoint,
)
from analysis.runs.read.tuning import (
    TUNING_REQUIRED,
    read_tuning_table,
    read_tuning_curves,
)
from analysis.runs.read.ablation import (
    read_ablation_conditions,
    read_ablation_confusion,
)
from analysis.runs.read.sae import (
    read_sae,
    read_sae_metrics,
)

__all__ = [
    "UnreadableFileError",
    "UnsafeFileError",
    "refused_global",
    "refusal_message",
    "load_tensor_file",
    "read_table",
    "read_classes",
    "read_over_zero",
    "read_stats",
    "read_top_clips",
    "read_index",
    "read_manifest",
    "Run",
    "task_of",
    "read_run",
    "find_runs",
    "Features",
    "read_features",
    "read_neurons",
    "read_ranking",
    "count_selected",
    "selection_warnings",
    "read_stability",
    "read_probe_results",
    "best_checkpoint",
    "read_checkpoint_epoch",
    "read_lightning_checkpoint",
    "TUNING_REQUIRED",
    "read_tuning_table",
    "read_tuning_curves",
    "read_ablation_conditions",
    "read_ablation_confusion",
    "read_sae",
    "read_sae_metrics",
]
