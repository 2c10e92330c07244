"""LightningModules of aape: ``FeatureExtractor`` (predict), ``LinearProbe`` (fit on features),
``AudioClassifier`` (encoder + frozen probe, test/ablation); encoders live in ``.encoders``."""

from .audio_classifier import AudioClassifier
from .feature_extractor import FeatureExtractor
from .linear_probe import LinearProbe
from .sae_trainer import SAETrainer
from .sparse_autoencoder import SparseAutoencoder

__all__ = ["AudioClassifier", "FeatureExtractor", "LinearProbe", "SAETrainer", "SparseAutoencoder"]
