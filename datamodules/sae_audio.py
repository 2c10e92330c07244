"""``MixedAudioDataModule``: the audio an SAE trains on — the train splits of one or more EVAR tasks mixed
(shuffled every epoch), validated on their ``valid`` splits (the held-out clips of the SAE's metrics).

Batches carry only ``audio``, ``length`` and ``index`` (labels of different tasks do not mix, and the SAE
needs none). Under DDP Lightning's distributed sampler shards the clips as for any map-style dataset.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from .evar import EVARDataModule


class _AudioOnly(Dataset):
    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.ds[i]
        return {"audio": item["audio"], "length": item["length"], "index": item["index"]}


class MixedAudioDataModule(pl.LightningDataModule):
    """Args:
    datamodules: the tasks (EVARDataModules at the encoder's sample rate).
    batch_size: clips per batch; num_workers: loader processes; seed: the shuffle's seed.
    """

    def __init__(
        self, datamodules: Sequence[EVARDataModule], batch_size: int = 32, num_workers: int = 0, seed: int = 0
    ) -> None:
        super().__init__()
        if not datamodules:
            raise ValueError("MixedAudioDataModule needs at least one task")
        self.datamodules = list(datamodules)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)

    def _split(self, split: str) -> Dataset:
        parts = []
        for dm in self.datamodules:
            dm.setup()
            if len(dm.datasets[split]):
                parts.append(_AudioOnly(dm.datasets[split]))
        if not parts:
            names = [dm.task for dm in self.datamodules]
            raise ValueError(
                f"MixedAudioDataModule: no clip in the {split!r} split of tasks {names} "
                "(the SAE's held-out metrics need a valid split)"
            )
        return ConcatDataset(parts)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self._split("train"),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._split("valid"), batch_size=self.batch_size, num_workers=self.num_workers)
