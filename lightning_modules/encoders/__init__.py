"""Encoder adapters behind one protocol (:mod:`lightning_modules.encoders.base`)."""
from .base import AudioEncoder, Positions, site_view

__all__ = ["AudioEncoder", "Positions", "site_view"]

# Concrete encoders (each module adds itself here when it exists).
try:  # noqa: SIM105
    from .m2d import M2DEncoder  # noqa: F401

    __all__.append("M2DEncoder")
except ImportError:  # pragma: no cover - during bootstrap only
    pass
try:
    from .crepe import CrepeEncoder  # noqa: F401

    __all__.append("CrepeEncoder")
except ImportError:  # pragma: no cover
    pass
try:
    from .timm_vit import TimmViTEncoder  # noqa: F401

    __all__.append("TimmViTEncoder")
except ImportError:  # pragma: no cover
    pass
