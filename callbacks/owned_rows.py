"""Under DDP, which rows of each test batch a process scores (each clip exactly once), and the exact sum
of integer counts over processes (:func:`analysis.ablation.owned_positions`, :func:`~analysis.ablation.pack_counts`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer
from torch import Tensor

from analysis import ablation as A


def owned_rows(trainer: Trainer) -> Optional[dict[int, list[Optional[Tensor]]]]:
    """Under DDP: per test dataloader, per batch, the rows this process scores (None: all of them), from
    every process's batch sampler (the dataset positions of its batches, exchanged once)."""
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return None
    loaders = trainer.test_dataloaders
    loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
    owned = {}
    for d, loader in enumerate(loaders):
        sampler = getattr(loader, "batch_sampler", None)
        if sampler is None:
            raise RuntimeError(
                "AblationCallback under DDP needs test dataloaders with a batch sampler (a "
                "map-style dataset and a batch_size), to score every clip exactly once"
            )
        batches = [[int(p) for p in b] for b in sampler]
        everyone: list = [None] * trainer.world_size
        dist.all_gather_object(everyone, [p for b in batches for p in b])
        keep = A.owned_positions(everyone, trainer.global_rank)
        per_batch, j = [], 0
        for b in batches:
            k = keep[j : j + len(b)]
            j += len(b)
            per_batch.append(None if all(k) else torch.tensor([i for i, x in enumerate(k) if x], dtype=torch.long))
        owned[d] = per_batch
    return owned


def rows_of(
    owned: Optional[dict[int, list[Optional[Tensor]]]], batch_idx: int, dataloader_idx: int, size: int
) -> Optional[Tensor]:
    """Rows of this batch that this process scores (None: all)."""
    if owned is None:
        return None
    per_batch = owned.get(dataloader_idx)
    if per_batch is None or batch_idx >= len(per_batch):
        raise RuntimeError(
            f"AblationCallback: batch {batch_idx} of test dataloader {dataloader_idx} is not "
            "in the batch sampler seen at the start"
        )
    rows = per_batch[batch_idx]
    if rows is not None and rows.numel() and int(rows.max()) >= size:
        raise RuntimeError(f"AblationCallback: batch {batch_idx} has {size} clips, fewer than its sampler said")
    return rows


def reduce_counts(trainer: Trainer, counts: list[Tensor]) -> list[Tensor]:
    """The integer ``counts`` summed over processes (one reduce of them packed together), on the host."""
    flat = A.pack_counts(counts)
    if trainer.world_size > 1:
        flat = trainer.strategy.reduce(flat, reduce_op="sum")
    return A.unpack_counts(flat.cpu(), [c.shape for c in counts])
