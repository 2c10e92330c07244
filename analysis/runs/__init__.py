"""The run-folder contract: every file name (:mod:`.layout`), every reader (:mod:`.read`, always
``weights_only=True``), every writer (:mod:`.write`, atomic through :mod:`.atomic`), what a run folder was
made from and the check against its consumer (:mod:`.identity`), and the ablation conditions a run folder
defines (:mod:`.conditions`). Imports the functional core only; no Lightning.
"""

from analysis.runs.atomic import OutputExistsError, check_writable
from analysis.runs.identity import check_same_model
from analysis.runs.layout import OutputTree, run_folder
from analysis.runs.read import (
    Features,
    Run,
    best_checkpoint,
    find_runs,
    read_classes,
    read_features,
    read_manifest,
    read_neurons,
    read_over_zero,
    read_run,
    read_stats,
)

__all__ = [
    "OutputExistsError",
    "check_writable",
    "OutputTree",
    "run_folder",
    "Features",
    "Run",
    "best_checkpoint",
    "check_same_model",
    "find_runs",
    "read_classes",
    "read_features",
    "read_manifest",
    "read_neurons",
    "read_over_zero",
    "read_run",
    "read_stats",
]
