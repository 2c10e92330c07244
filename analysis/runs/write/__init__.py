"""Writers of aape's outputs (file names: :mod:`analysis.runs.layout`), one submodule per kind of folder,
all imported here (import them from ``analysis.runs.write``).

The statistics run folder is written as a whole (:func:`write_run_folder`): files go to a hidden
temporary sibling folder that is renamed into place, so a crash never leaves a half-written run. Every
other result file is written atomically on its own (:mod:`analysis.runs.atomic`). An existing result is
an error unless ``overwrite``.

The run folder's per-clip rows stream: while predicting, each process appends its rows to a
:class:`RowSpool` (raw files on disk); at the end the rows are put in dataset order (:class:`RowOrder`)
and written block by block (:class:`RowBlocks`) into ``features.pt`` / ``gts.pt``
(:class:`TensorFileWriter`: ordinary ``torch.save`` files written without ever holding the whole tensor)
and ``index.csv``. Memory: one block of rows plus O(clips) integers, whatever the number of clips.

* :mod:`.statistics_folder`: the statistics run folder (:func:`write_run_folder`, ``index.csv`` rows)
* :mod:`.tensor_file_writer`, :mod:`.row_spool`, :mod:`.row_blocks`: its streamed rows
* :mod:`.selection`: the AAPE selection (``neurons.*``) and its stability
* :mod:`.ablation`: an ablation folder
* :mod:`.tuning`: a tuning folder and the steering curves
* :mod:`.sae`: a sparse-autoencoder folder and the neurons-vs-features table
* :mod:`.staging`: any folder written at once (:func:`staged_folder`)
"""

from __future__ import annotations

from analysis.runs.atomic import OutputExistsError
from analysis.runs.write.tensor_file_writer import (
    TensorFileWriter,
)
from analysis.runs.write.row_spool import (
    RowSpool,
)
from analysis.runs.write.row_blocks import (
    BLOCK_BYTES,
    RowOrder,
    RowBlocks,
)
from analysis.runs.write.statistics_folder import (
    check_run_folder,
    label_strings,
    index_table,
    data_list_sha256,
    write_run_folder,
)
from analysis.runs.write.selection import (
    write_neurons,
    stability_paths,
    write_stability,
)
from analysis.runs.write.ablation import (
    check_ablation_writable,
    write_ablation,
)
from analysis.runs.write.tuning import (
    tuning_paths,
    write_tuning,
    check_steering_writable,
    write_steering,
)
from analysis.runs.write.staging import (
    staged_folder,
)
from analysis.runs.write.sae import (
    write_sae,
    write_neurons_vs_features,
)

__all__ = [
    "OutputExistsError",
    "TensorFileWriter",
    "RowSpool",
    "BLOCK_BYTES",
    "RowOrder",
    "RowBlocks",
    "check_run_folder",
    "label_strings",
    "index_table",
    "data_list_sha256",
    "write_run_folder",
    "write_neurons",
    "stability_paths",
    "write_stability",
    "check_ablation_writable",
    "write_ablation",
    "tuning_paths",
    "write_tuning",
    "check_steering_writable",
    "write_steering",
    "staged_folder",
    "write_sae",
    "write_neurons_vs_features",
]
