"""LinearProbe: EVAR-protocol linear evaluation on frozen embeddings.

``logits = Linear(E, C)((x - mean) / std)``: the train standardiser lives in buffers ``mean``/``std`` so a
checkpoint carries it (:class:`~lightning_modules.audio_classifier.AudioClassifier` reuses it on audio).
Single-label: softmax cross-entropy over C logits (two classes are two logits, never one sigmoid);
multi-label: BCE with logits, scored by macro mAP. Adam (lr 3e-5 for M2D, weight decay 1e-8).
Early stopping (``val/score``, patience 20, ≤ 200 epochs) and best-weight checkpointing are Trainer
callbacks in the configs (``configs/experiment/probe_*.yaml``) and in :mod:`analysis.app.probe`.

Logged: ``{train,val,test}/loss``, ``{val,test}/acc`` (single-label micro accuracy), ``/mAP``
(multi-label), ``/score`` (acc or mAP, what early stopping monitors), ``/macro_recall``, ``/macro_f1``
and ``test/recall/<class>``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassRecall,
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelRecall,
)


class LinearProbe(LightningModule):
    """One linear layer on standardised frozen embeddings.

    Args:
        num_classes: number of classes C (None: taken from the datamodule in ``setup``).
        embed_dim: embedding size E (None: taken from the datamodule in ``setup``).
        lr: Adam learning rate (EVAR uses 3e-5 for M2D).
        weight_decay: Adam weight decay.
        multilabel: multi-label task (BCE, mAP); None: taken from the datamodule.
        classes: class names (None: taken from the datamodule); stored in the checkpoint.
        source: identity of the run folder whose embeddings the probe is fitted on (model, task, classes,
            data list: :func:`analysis.runs.identity.run_identity`; None: taken from the datamodule);
            stored in the checkpoint so the ablation can refuse a probe of another model or data.
    """

    def __init__(
        self,
        num_classes: Optional[int] = None,
        embed_dim: Optional[int] = None,
        lr: float = 3e-5,
        weight_decay: float = 1e-8,
        multilabel: Optional[bool] = None,
        classes: Optional[list[str]] = None,
        source: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.head: Optional[nn.Linear] = None
        if num_classes is not None and embed_dim is not None:
            self._build()

    # -- construction ----------------------------------------------------------------------------
    @property
    def classes(self) -> Optional[list[str]]:
        return self.hparams.classes

    @property
    def multilabel(self) -> bool:
        return bool(self.hparams.multilabel)

    @property
    def source(self) -> Optional[dict[str, Any]]:
        return self.hparams.get("source")

    def _build(self) -> None:
        C, E = int(self.hparams.num_classes), int(self.hparams.embed_dim)
        if C < 2:
            raise ValueError(f"LinearProbe needs at least 2 classes, got {C}")
        self.head = nn.Linear(E, C)
        self.register_buffer("mean", torch.zeros(E))
        self.register_buffer("std", torch.ones(E))
        if self.multilabel:
            mk = lambda: MetricCollection(  # noqa: E731
                {
                    "mAP": MultilabelAveragePrecision(C, average="macro"),
                    "macro_recall": MultilabelRecall(C, average="macro"),
                    "macro_f1": MultilabelF1Score(C, average="macro"),
                }
            )
        else:
            mk = lambda: MetricCollection(  # noqa: E731
                {
                    "acc": MulticlassAccuracy(C, average="micro"),
                    "macro_recall": MulticlassRecall(C, average="macro"),
                    "macro_f1": MulticlassF1Score(C, average="macro"),
                }
            )
        self.val_metrics = mk().clone(prefix="val/")
        self.test_metrics = mk().clone(prefix="test/")
        self.test_recall = MultilabelRecall(C, average=None) if self.multilabel else MulticlassRecall(C, average=None)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            if hasattr(dm, "setup") and getattr(dm, "features", "n/a") is None:
                dm.setup(stage)
            for key, val in (
                ("num_classes", getattr(dm, "num_classes", None)),
                ("embed_dim", getattr(dm, "embed_dim", None)),
                ("multilabel", getattr(dm, "multilabel", None)),
                ("classes", list(getattr(dm, "classes", []) or []) or None),
                ("source", getattr(dm, "source", None) or None),
            ):
                if val is None:
                    continue
                if self.hparams.get(key) is None:
                    self.hparams[key] = val
                elif self.hparams[key] != val:
                    raise ValueError(f"LinearProbe {key}={self.hparams[key]!r} but the datamodule has {val!r}")
        if self.hparams.multilabel is None:
            self.hparams.multilabel = False
        if self.head is None:
            if self.hparams.num_classes is None or self.hparams.embed_dim is None:
                raise ValueError("LinearProbe: num_classes/embed_dim not given and no datamodule to infer them from")
            self._build()
            self.to(self.device)
        if stage == "fit" and dm is not None and getattr(dm, "mean", None) is not None:
            self.set_standardiser(dm.mean, dm.std)

    def set_standardiser(self, mean: Tensor, std: Tensor) -> None:
        """Copy the train mean/std ``[E]`` into the buffers."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"standardiser of shape {tuple(mean.shape)} for a probe of embed_dim {self.mean.numel()}")
        if (std <= 0).any():
            raise ValueError("standardiser std must be > 0")
        self.mean.copy_(mean)
        self.std.copy_(std)

    # -- maths -----------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Raw embeddings ``[B, E]`` → logits ``[B, C]``."""
        return self.head((x - self.mean) / self.std)

    def loss(self, logits: Tensor, label: Tensor) -> Tensor:
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, label.float())
        return F.cross_entropy(logits, label.long())

    def _target(self, label: Tensor) -> Tensor:
        return label.long()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self(batch["embedding"])
        loss = self.loss(logits, batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=logits.shape[0])
        return loss

    def _eval(self, batch: dict, metrics: MetricCollection, stage: str) -> Tensor:
        logits = self(batch["embedding"])
        self.log(f"{stage}/loss", self.loss(logits, batch["label"]), batch_size=logits.shape[0])
        scores = logits.sigmoid() if self.multilabel else logits
        metrics.update(scores, self._target(batch["label"]))
        return logits

    def epoch_values(self, metrics: MetricCollection, stage: str) -> dict[str, Tensor]:
        """Compute and reset ``metrics``; adds ``<stage>/score`` (acc or mAP)."""
        vals = dict(metrics.compute())
        vals[f"{stage}/score"] = vals[f"{stage}/mAP" if self.multilabel else f"{stage}/acc"]
        metrics.reset()
        return vals

    def test_epoch_values(self) -> dict[str, Tensor]:
        """Test metrics of the epoch (incl. ``test/recall/<class>``), then reset."""
        vals = self.epoch_values(self.test_metrics, "test")
        rec = self.test_recall.compute()
        names = self.classes or [str(i) for i in range(rec.numel())]
        vals.update({f"test/recall/{n}": r for n, r in zip(names, rec)})
        self.test_recall.reset()
        return vals

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.epoch_values(self.val_metrics, "val"))

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self._eval(batch, self.test_metrics, "test")
        self.test_recall.update(logits.sigmoid() if self.multilabel else logits, self._target(batch["label"]))
        return {"logits": logits}

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_epoch_values())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
