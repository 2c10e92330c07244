"""FeatureDataModule: frozen clip embeddings of a neuron-statistics run folder, for the linear probe.

Reads ``<run_dir>/features.pt`` (float32 ``[N, E]``), ``gts.pt`` (int64 ``[N]`` or multi-hot ``[N, C]``),
``index.csv`` (columns ``row,index,file_name,label,split``; ``row`` = row of features.pt) and
``classes.txt``. Splits by the ``split`` column; when there is no ``valid`` split (fold tasks) a seeded
``valid_fraction`` of train is carved out that covers every class. The train mean/std (population std,
zero std → 1, as sklearn's StandardScaler) are exposed as ``.mean``/``.std``; batches hold the *raw*
embeddings and the :class:`~lightning_modules.linear_probe.LinearProbe` applies the standardiser, which it
stores as buffers so a checkpoint carries it.

Batch dict: ``embedding`` float32 ``[B, E]``, ``label`` int64 ``[B]`` or float32 ``[B, C]``, ``row`` int64
``[B]`` (row of features.pt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from analysis.runs.identity import run_identity
from analysis.runs.layout import INDEX
from analysis.runs.read import read_features


class FeatureDataset(Dataset):
    """Rows ``rows`` of (features, gts)."""

    def __init__(self, features: Tensor, gts: Tensor, rows: Tensor) -> None:
        self.features, self.gts, self.rows = features, gts, rows

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitem__(self, i: int) -> dict:
        r = int(self.rows[i])
        return {"embedding": self.features[r], "label": self.gts[r], "row": r}


def carve_valid(gts: Tensor, train_rows: Tensor, fraction: float, seed: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """Split ``train_rows`` into (train, valid) with about ``fraction`` of them in valid, every class
    present in valid (single-label: stratified, ``max(1, round(fraction · n_c))`` per class; a class
    with a single train clip stays in train). Multi-label: a random ``fraction`` plus, for each class not
    yet covered, one random clip carrying it. Deterministic in ``seed``. Returns sorted LongTensors."""
    g = torch.Generator().manual_seed(int(seed))
    valid: list[int] = []
    if gts.dim() == 1:
        for c in range(num_classes):
            rows_c = train_rows[gts[train_rows] == c]
            if rows_c.numel() < 2:
                continue
            k = min(max(1, int(round(fraction * rows_c.numel()))), rows_c.numel() - 1)
            valid += rows_c[torch.randperm(rows_c.numel(), generator=g)[:k]].tolist()
    else:
        perm = train_rows[torch.randperm(train_rows.numel(), generator=g)]
        k = max(1, int(round(fraction * train_rows.numel())))
        valid = perm[:k].tolist()
        chosen = set(valid)
        for c in range(num_classes):
            if gts[torch.as_tensor(valid, dtype=torch.long), c].sum() > 0:
                continue
            cand = [r for r in perm.tolist() if r not in chosen and gts[r, c] > 0]
            if cand:
                valid.append(cand[0])
                chosen.add(cand[0])
    vset = set(valid)
    train = [r for r in train_rows.tolist() if r not in vset]
    return torch.as_tensor(sorted(train), dtype=torch.long), torch.as_tensor(sorted(valid), dtype=torch.long)


def standardiser(x: Tensor) -> tuple[Tensor, Tensor]:
    """Train mean and population std ``[E]`` (float32), zero std replaced by 1."""
    x64 = x.double()
    mean = x64.mean(0)
    std = x64.std(0, unbiased=False) if x.shape[0] > 1 else torch.zeros_like(mean)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


class FeatureDataModule(LightningDataModule):
    """Frozen embeddings of a run folder, split by ``index.csv``.

    Args:
        run_dir: neuron-statistics run folder (features.pt, gts.pt, index.csv, classes.txt).
        batch_size: batch size; default ``min(max_batch_size, N_train)`` (EVAR: min(200, N)).
        valid_fraction: share of train carved out as validation when the task has no valid split.
        seed: seed of the carve-out and of the train shuffling.
        num_workers: DataLoader workers.
        max_batch_size: cap of the default batch size.
    """

    def __init__(
        self,
        run_dir: str,
        batch_size: Optional[int] = None,
        valid_fraction: float = 0.1,
        seed: int = 42,
        num_workers: int = 0,
        max_batch_size: int = 200,
    ) -> None:
        super().__init__()
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        self.run_dir = Path(run_dir)
        self._batch_size = batch_size
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.max_batch_size = max_batch_size
        self.features: Optional[Tensor] = None
        self.gts: Optional[Tensor] = None
        self.rows: dict[str, Tensor] = {}
        self.datasets: dict[str, FeatureDataset] = {}
        self.classes: list[str] = []
        self.mean: Optional[Tensor] = None
        self.std: Optional[Tensor] = None
        self.carved_valid = False
        #: identity of the run folder (model, task, classes, data list; ``manifest.json``), None before setup
        self.source: Optional[dict[str, Any]] = None

    # -- facts -----------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def embed_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def multilabel(self) -> bool:
        return self.gts is not None and self.gts.dim() == 2

    @property
    def batch_size(self) -> int:
        if self._batch_size is not None:
            return int(self._batch_size)
        n = len(self.rows.get("train", ())) if self.rows else self.max_batch_size
        return max(1, min(self.max_batch_size, n))

    # -- loading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        f = read_features(self.run_dir)
        self.features, self.gts, self.classes = f.features, f.gts, f.classes
        self.source = run_identity(self.run_dir) or None
        self.rows = dict(f.rows)
        if self.rows["train"].numel() == 0:
            raise ValueError(f"{self.run_dir / INDEX}: no train rows")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.features is not None:
            return
        self._load()
        if self.rows["valid"].numel() == 0:
            self.rows["train"], self.rows["valid"] = carve_valid(
                self.gts, self.rows["train"], self.valid_fraction, self.seed, self.num_classes
            )
            self.carved_valid = True
        self.mean, self.std = standardiser(self.features[self.rows["train"]])
        self.datasets = {s: FeatureDataset(self.features, self.gts, r) for s, r in self.rows.items()}

    def transform(self, x: Tensor) -> Tensor:
        """Standardise embeddings ``[B, E]`` with the train mean/std."""
        return (x - self.mean.to(x)) / self.std.to(x)

    # -- loaders ---------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        ds = self.datasets[split]
        if len(ds) == 0:
            raise ValueError(f"{self.run_dir / INDEX}: no {split} rows")
        g = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=g, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
