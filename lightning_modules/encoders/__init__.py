"""Encoder adapters behind one protocol (:mod:`lightning_modules.encoders.base`)."""

from .base import AudioEncoder, Positions, site_view
from .crepe import CrepeEncoder
from .fcpe import FCPEEncoder
from .features import FeatureEncoder, SAESplice
from .hf import HFAudioEncoder
from .m2d import M2DEncoder
from .pesto import PestoEncoder
from .resemblyzer import ResemblyzerEncoder
from .silero_vad import SileroVADEncoder
from .timm_vit import TimmViTEncoder

__all__ = [
    "AudioEncoder",
    "CrepeEncoder",
    "FCPEEncoder",
    "FeatureEncoder",
    "HFAudioEncoder",
    "M2DEncoder",
    "PestoEncoder",
    "Positions",
    "ResemblyzerEncoder",
    "SAESplice",
    "SileroVADEncoder",
    "TimmViTEncoder",
    "site_view",
]
