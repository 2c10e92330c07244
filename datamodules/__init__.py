"""Datamodules: EVAR-format tasks (:class:`EVARDataModule`), features (:class:`FeatureDataModule`), audio
loading and the synthetic task writer (``python -m analysis synth``)."""

from .evar import EVARDataModule, EVARDataset
from .features import FeatureDataModule
from .tasks import TASKS, TaskSpec, get_task, register_task, sr_dir

__all__ = [
    "EVARDataModule",
    "EVARDataset",
    "FeatureDataModule",
    "TASKS",
    "TaskSpec",
    "get_task",
    "register_task",
    "sr_dir",
]
