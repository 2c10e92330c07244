"""Thin Lightning callbacks over the functional core in :mod:`analysis`."""

from .ablation import AblationCallback
from .activation_stats import ActivationStatsCallback
from .steering import SteeringCallback

__all__ = ["AblationCallback", "ActivationStatsCallback", "SteeringCallback"]
