"""``FeatureExtractor``: a frozen encoder run by ``trainer.predict`` (no training).

Each predict step returns the clip embeddings with the batch's bookkeeping; statistics are gathered
by callbacks (``ActivationStatsCallback``) that hook ``pl_module.encoder`` and read the batch.
"""

from __future__ import annotations

from typing import Any, Optional

import lightning.pytorch as pl
from torch import Tensor

from .encoders.base import AudioEncoder


class FeatureExtractor(pl.LightningModule):
    """Wrap any :class:`~lightning_modules.encoders.base.AudioEncoder` for ``trainer.predict``.

    Args:
        encoder: the audio encoder (frozen: eval mode, no gradients); its ``neuron_sites`` are
            what the statistics callback hooks.
    """

    def __init__(self, encoder: AudioEncoder) -> None:
        super().__init__()
        if not isinstance(encoder, AudioEncoder):
            raise TypeError(f"FeatureExtractor needs an AudioEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """The encoder stays in eval mode whatever the Trainer asks (BatchNorm statistics and
        dropout are never in training mode: this module never trains)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` -> embeddings ``[B, E]``."""
        return self.encoder(audio, lengths)

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Any]:
        """Returns ``{"embedding" [B, E], "label", "index", "split"}`` (label/index/split passed
        through from the batch; None when the batch lacks them)."""
        if "audio" not in batch:
            raise KeyError(f"FeatureExtractor batch has no 'audio' key (keys: {sorted(batch)})")
        embedding = self(batch["audio"], batch.get("length"))
        return {
            "embedding": embedding,
            "label": batch.get("label"),
            "index": batch.get("index"),
            "split": batch.get("split"),
        }

    def configure_optimizers(self) -> None:
        """No optimiser: the encoder is frozen."""
        return None
