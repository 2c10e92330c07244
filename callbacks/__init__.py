"""Thin Lightning callbacks over the functional core in :mod:`analysis`."""
from .activation_stats import ActivationStatsCallback

__all__ = ["ActivationStatsCallback"]

try:  # written by another helper; optional until it lands
    from .ablation import AblationCallback  # noqa: F401

    __all__.append("AblationCallback")
except ImportError:  # pragma: no cover
    pass
