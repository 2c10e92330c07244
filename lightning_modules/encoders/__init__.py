"""Encoder adapters behind one protocol (:mod:`lightning_modules.encoders.base`)."""
from .base import AudioEncoder, Positions, site_view
from .crepe import CrepeEncoder
from .hf import HFAudioEncoder
from .m2d import M2DEncoder
from .pesto import PestoEncoder
from .timm_vit import TimmViTEncoder

__all__ = ["AudioEncoder", "CrepeEncoder", "HFAudioEncoder", "M2DEncoder", "PestoEncoder", "Positions", "TimmViTEncoder", "site_view"]
