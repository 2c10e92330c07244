"""Scoring counts: per condition × class ``correct`` / ``n``, clips lost and gained against the baseline and
confusion counts ``[K, C, C]`` (int64, on the device, merged exactly by summation), and the DDP helpers
that score each clip once and sum the processes' counts in one reduce."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def count_correct(preds: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per condition × class counts.

    Args:
        preds: LongTensor ``[K, B]`` predicted class per condition and clip.
        labels: LongTensor ``[B]``.
    Returns: ``correct`` int64 ``[K, C]`` (clips of class c predicted c), ``n`` int64 ``[C]``, on the
    predictions' device (no copy back to the host).
    """
    labels = labels.long().to(preds.device)
    n = torch.zeros(num_classes, dtype=torch.long, device=preds.device).index_add_(0, labels, torch.ones_like(labels))
    hit = (preds == labels[None, :]).long()  # [K, B]
    correct = torch.zeros(preds.shape[0], num_classes, dtype=torch.long, device=preds.device)
    correct.index_add_(1, labels, hit)
    return correct, n


def pack_counts(counts: Sequence[Tensor]) -> Tensor:
    """Integer count tensors (any shapes) as one flat int64 tensor, so processes sum them in one reduce.

    >>> flat = pack_counts([torch.ones(2, 3, dtype=torch.long), torch.arange(2)])
    >>> [t.tolist() for t in unpack_counts(flat, [(2, 3), (2,)])]
    [[[1, 1, 1], [1, 1, 1]], [0, 1]]
    """
    return torch.cat([c.long().flatten() for c in counts])


def unpack_counts(flat: Tensor, shapes: Sequence[Sequence[int]]) -> list[Tensor]:
    """Inverse of :func:`pack_counts` for tensors of ``shapes``."""
    sizes = [math.prod(s) for s in shapes]
    return [t.view(*s) for t, s in zip(torch.split(flat, sizes), shapes)]


def owned_positions(positions: Sequence[Sequence[int]], rank: int) -> list[bool]:
    """Which of process ``rank``'s samples it scores when processes may have received the same dataset
    position twice (DDP pads the test data with repeated clips): each position counts once, for the first
    process in rank order (and the first time in that process's sequence) that holds it.

    Args:
        positions: every process's dataset positions in its iteration order.

    >>> owned_positions([[0, 2, 4], [1, 3, 0]], 1)
    [True, True, False]
    """
    owner: dict[int, tuple[int, int]] = {}
    for r, seq in enumerate(positions):
        for j, p in enumerate(seq):
            owner.setdefault(int(p), (r, j))
    return [owner[int(p)] == (rank, j) for j, p in enumerate(positions[rank])]


def count_flips(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per condition × class, the clips whose correctness changed against the baseline (condition 0):
    int64 ``[2, K, C]``, ``[0]`` = *lost* (right under the baseline, wrong under the condition), ``[1]`` =
    *gained* (wrong, then right). With the class's clip count they pair each clip's baseline and condition
    outcomes, so a bootstrap over test clips needs no per-clip list, and they sum exactly over processes.

    >>> count_flips(torch.tensor([[0, 1, 1], [1, 1, 0]]), torch.tensor([0, 1, 0]), 2).tolist()
    [[[0, 0], [1, 0]], [[0, 0], [1, 0]]]
    """
    labels = labels.long().to(preds.device)
    hit = preds == labels[None, :]  # [K, B]
    out = torch.zeros(2, preds.shape[0], num_classes, dtype=torch.long, device=preds.device)
    out[0].index_add_(1, labels, (hit[:1] & ~hit).long())
    out[1].index_add_(1, labels, (~hit[:1] & hit).long())
    return out


def count_confusion(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per condition confusion counts int64 ``[K, C, C]``: ``[k, true class, predicted class]``.

    Args:
        preds: LongTensor ``[K, B]`` predicted class per condition and clip.
        labels: LongTensor ``[B]``.

    >>> count_confusion(torch.tensor([[0, 1, 1], [1, 1, 1]]), torch.tensor([0, 1, 0]), 2).tolist()
    [[[1, 1], [0, 1]], [[0, 2], [0, 1]]]
    """
    labels = labels.long().to(preds.device)
    C = int(num_classes)
    cell = labels[None, :] * C + preds.long()  # [K, B]
    out = torch.zeros(preds.shape[0], C * C, dtype=torch.long, device=preds.device)
    out.scatter_add_(1, cell, torch.ones_like(cell))
    return out.view(-1, C, C)
