"""Encoder adapters behind one protocol (:mod:`lightning_modules.encoders.base`)."""
from .base import AudioEncoder, Positions, site_view
from .crepe import CrepeEncoder
from .features import FeatureEncoder, SAESplice
from .hf import HFAudioEncoder
from .m2d import M2DEncoder
from .timm_vit import TimmViTEncoder

__all__ = ["AudioEncoder", "CrepeEncoder", "FeatureEncoder", "SAESplice", "HFAudioEncoder", "M2DEncoder", "Positions", "TimmViTEncoder", "site_view"]
