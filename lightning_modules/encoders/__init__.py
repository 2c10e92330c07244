"""Encoder adapters behind one protocol (:mod:`lightning_modules.encoders.base`)."""
from .base import AudioEncoder, Positions, site_view
from .crepe import CrepeEncoder
from .m2d import M2DEncoder
from .timm_vit import TimmViTEncoder

__all__ = ["AudioEncoder", "CrepeEncoder", "M2DEncoder", "Positions", "TimmViTEncoder", "site_view"]
