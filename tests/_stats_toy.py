"""Test helper: the statistics pass's toy in Lightning form: :class:`ToyDataModule` (batch dicts in the
EVARDataModule format over the in-memory clips of :func:`_counting.toy_data`, three classes) and
:class:`ToyExtractor` (a predict module around :class:`_counting.ToyEncoder`, optionally failing inside a
batch). Shared by the statistics, SAE, tuning and DDP tests (the DDP configs name them by class path)."""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from _counting import ToyEncoder, toy_data

CLASSES = ["low", "mid", "high"]


class ToyClips(Dataset):
    """In-memory clips as batch items in the EVARDataModule format."""

    def __init__(self, audio, lengths, labels, splits) -> None:
        self.audio, self.lengths, self.labels, self.splits = audio, lengths, labels, splits

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "audio": self.audio[i],
            "length": self.lengths[i],
            "label": self.labels[i],
            "index": i,
            "split": self.splits[i],
            "file_name": f"clip_{i:03d}.wav",
        }


class ToyDataModule(L.LightningDataModule):
    """Batch dicts in the EVARDataModule format (COMMON brief) over in-memory toy clips."""

    task = "toy_task"

    def __init__(
        self, n: int = 7, multilabel: bool = False, batch_size: int = 3, labels: Optional[list[int]] = None
    ) -> None:
        """n clips; labels: class per clip (default ``i % 3``) for single-label data."""
        super().__init__()
        self.audio, self.lengths, self.labels = toy_data(n=n, multilabel=multilabel)
        if labels is not None:
            self.labels = torch.tensor(labels, dtype=torch.long)
        self.splits = [("train", "valid", "test")[i % 3] for i in range(n)]
        self.classes, self.multilabel, self.batch_size = CLASSES, multilabel, batch_size

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(ToyClips(self.audio, self.lengths, self.labels, self.splits), batch_size=self.batch_size)


class ToyExtractor(L.LightningModule):
    def __init__(self, fail_at_batch: int = -1) -> None:
        super().__init__()
        self.encoder = ToyEncoder().eval()
        self.fail_at_batch = fail_at_batch

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if batch_idx == self.fail_at_batch:
            raise RuntimeError("boom inside a batch")
        emb = self.encoder(batch["audio"], batch["length"])
        return {"embedding": emb, "label": batch["label"], "index": batch["index"], "split": batch["split"]}
