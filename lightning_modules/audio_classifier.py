"""AudioClassifier: encoder + frozen linear probe (with its train standardiser) on audio, for
``trainer.test`` (baseline accuracy, and the ablation pass of :class:`callbacks.ablation.AblationCallback`).

``test_step`` returns ``{"logits" [B, C], "label", "index"}``; ``trainer.test`` logs ``test/acc``
(single-label micro accuracy) or ``test/mAP`` (multi-label), ``test/score``, ``test/macro_recall``,
``test/macro_f1`` and ``test/recall/<class>``. Computed from audio with the same encoder and crop as the
predict pass, these equal the probe's scores on the stored test embeddings.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

from lightning.pytorch import LightningModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor

from analysis.runs.read import read_lightning_checkpoint

from lightning_modules.encoders.base import AudioEncoder
from lightning_modules.linear_probe import LinearProbe


def load_probe(path: str | Path) -> LinearProbe:
    """A :class:`LinearProbe` from its Lightning checkpoint, read with ``weights_only=True`` through the
    project's one loader (:func:`analysis.runs.read.read_lightning_checkpoint`): built from the
    checkpoint's hyper-parameters, then its ``state_dict`` loaded strictly. Errors name the file.

    The probe is built outside LightningCLI's "given hyper-parameters" context, which would otherwise hand
    the *enclosing* module's arguments to the probe's ``save_hyperparameters``."""
    ckpt = read_lightning_checkpoint(path)
    names = set(inspect.signature(LinearProbe.__init__).parameters) - {"self"}
    hparams = {k: v for k, v in dict(ckpt.get("hyper_parameters") or {}).items() if k in names}
    token = _given_hyperparameters.set(None)
    try:
        probe = LinearProbe(**hparams)
    finally:
        _given_hyperparameters.reset(token)
    if probe.head is None:
        raise ValueError(f"{path}: probe checkpoint has no num_classes/embed_dim hyper-parameters")
    try:
        probe.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"{path}: its state_dict does not fit LinearProbe(num_classes={hparams.get('num_classes')}, "
            f"embed_dim={hparams.get('embed_dim')}): {' '.join(str(e).split())}"
        ) from e
    return probe


class AudioClassifier(LightningModule):
    """Frozen encoder + frozen :class:`LinearProbe` loaded from ``probe_checkpoint``.

    Args:
        encoder: the audio encoder whose embeddings the probe was trained on.
        probe_checkpoint: path of a LinearProbe checkpoint (holds weights, standardiser, class names).
    """

    def __init__(self, encoder: AudioEncoder, probe_checkpoint: str) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        p = Path(probe_checkpoint)
        if not p.exists():
            raise FileNotFoundError(f"probe checkpoint {p} not found")
        self.encoder = encoder
        self.probe = load_probe(p)
        E = self.probe.head.in_features
        if getattr(encoder, "embed_dim", E) != E:
            raise ValueError(
                f"{p}: probe expects embeddings of size {E}, encoder {type(encoder).__name__} gives {encoder.embed_dim}"
            )
        for m in (self.encoder, self.probe):
            m.eval()
            m.requires_grad_(False)

    @property
    def classes(self) -> Optional[list[str]]:
        return self.probe.classes

    @property
    def multilabel(self) -> bool:
        return self.probe.multilabel

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        dm_classes = getattr(dm, "classes", None) if dm is not None else None
        if dm_classes and self.classes and list(dm_classes) != list(self.classes):
            raise ValueError(
                f"probe {self.hparams.probe_checkpoint} was trained on classes {self.classes}, "
                f"the datamodule has {list(dm_classes)}"
            )

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        self.probe.eval()
        return self

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` → logits ``[B, C]``."""
        return self.probe(self.encoder(audio, lengths))

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self(batch["audio"], batch.get("length"))
        label = batch["label"]
        self.log("test/loss", self.probe.loss(logits, label), batch_size=logits.shape[0])
        scores = logits.sigmoid() if self.multilabel else logits
        self.probe.test_metrics.update(scores, label.long())
        self.probe.test_recall.update(scores, label.long())
        return {"logits": logits, "label": label, "index": batch.get("index")}

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.probe.test_epoch_values())

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self(batch["audio"], batch.get("length"))
        return {"logits": logits, "label": batch["label"], "index": batch.get("index")}
