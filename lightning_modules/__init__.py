"""LightningModules of aape: ``FeatureExtractor`` (predict), ``LinearProbe`` (fit on features),
``AudioClassifier`` (encoder + frozen probe, test/ablation); encoders live in ``.encoders``."""
from .feature_extractor import FeatureExtractor

__all__ = ["FeatureExtractor"]

# Written by other helpers; guarded until they exist (the lead cleans this up).
try:
    from .linear_probe import LinearProbe  # noqa: F401

    __all__.append("LinearProbe")
except ImportError:  # pragma: no cover - during bootstrap only
    pass
try:
    from .audio_classifier import AudioClassifier  # noqa: F401

    __all__.append("AudioClassifier")
except ImportError:  # pragma: no cover
    pass
