"""Overlap between class neuron sets: Jaccard ``|A ∩ B| / |A ∪ B|`` of (layer, neuron) sets.

Sets are boolean masks ``[C, L, N]`` (class c holds neuron (l, n)); see
:func:`analysis.aape.neurons_to_masks`. Jaccard of two empty sets is undefined and returned as NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor


def jaccard_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise Jaccard between the class sets of ``a [Ca, L, N]`` and ``b [Cb, L, N]`` → ``[Ca, Cb]``
    (float64; NaN where both sets are empty).

    >>> a = torch.tensor([[[1, 1, 0]], [[0, 0, 0]]], dtype=torch.bool)  # 2 classes, L=1, N=3
    >>> b = torch.tensor([[[0, 1, 1]]], dtype=torch.bool)
    >>> jaccard_matrix(a, b)
    tensor([[0.3333],
            [0.0000]], dtype=torch.float64)
    >>> jaccard_matrix(a[1:], a[1:])
    tensor([[nan]], dtype=torch.float64)
    """
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"neuron grids differ: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    fa = a.flatten(1).double()
    fb = b.flatten(1).double()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / union  # 0/0 = NaN for two empty sets


def jaccard(a: Tensor, b: Tensor) -> float:
    """Jaccard of two masks of the same shape (NaN if both are empty).

    >>> jaccard(torch.tensor([1, 1, 0], dtype=torch.bool), torch.tensor([1, 0, 0], dtype=torch.bool))
    0.5
    """
    inter = int((a & b).sum())
    union = int((a | b).sum())
    return inter / union if union else float("nan")


def paired_jaccard(a: Tensor, b: Tensor) -> Tensor:
    """Jaccard of corresponding sets: ``a``, ``b`` bool ``[C, ...]`` → float64 ``[C]`` (NaN where both are
    empty).

    >>> paired_jaccard(torch.tensor([[1, 1], [0, 0]], dtype=torch.bool), torch.tensor([[1, 0], [0, 0]], dtype=torch.bool))
    tensor([0.5000,    nan], dtype=torch.float64)
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    inter = (a & b).flatten(1).sum(1, dtype=torch.int64).double()
    union = (a | b).flatten(1).sum(1, dtype=torch.int64).double()
    return inter / union


def intersection_counts(a: Tensor, b: Tensor) -> Tensor:
    """``[Ca, Cb]`` int64 number of shared neurons between class sets of ``a`` and ``b``."""
    return (a.flatten(1).double() @ b.flatten(1).double().T).round().long()


def union_mask(masks: Tensor) -> Tensor:
    """``[C, L, N]`` → ``[L, N]``: neurons belonging to at least one class."""
    return masks.any(dim=0)


def per_layer_counts(mask: Tensor) -> Tensor:
    """``[..., L, N]`` bool → ``[..., L]`` int64 neurons per layer.

    >>> per_layer_counts(torch.tensor([[1, 0], [1, 1]], dtype=torch.bool)).tolist()
    [1, 2]
    """
    return mask.sum(dim=-1)


def shared_per_layer(a: Tensor, b: Tensor) -> dict[str, Tensor]:
    """Per-layer distribution of shared neurons between two tasks' class sets ``a [Ca, L, N]``,
    ``b [Cb, L, N]``: ``{"a": [L], "b": [L], "shared": [L], "pairs": [L]}`` where ``shared`` counts
    neurons selected for some class of both tasks and ``pairs`` counts (class_a, class_b, neuron)
    incidences (a neuron shared by several class pairs counts once per pair).

    >>> a = torch.tensor([[[1, 1], [0, 1]]], dtype=torch.bool); b = torch.tensor([[[0, 1], [0, 1]]], dtype=torch.bool)
    >>> {k: v.tolist() for k, v in shared_per_layer(a, b).items()}
    {'a': [2, 1], 'b': [1, 1], 'shared': [1, 1], 'pairs': [1, 1]}
    """
    ua, ub = union_mask(a), union_mask(b)
    pairs = torch.einsum("aln,bln->l", a.double(), b.double()).round().long()
    return {"a": per_layer_counts(ua), "b": per_layer_counts(ub), "shared": per_layer_counts(ua & ub), "pairs": pairs}
