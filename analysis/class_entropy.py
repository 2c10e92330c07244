"""Entropy over classes: each neuron's activation probabilities normalised over the classes
(:func:`normalise`), their Shannon entropy (:func:`entropy`, what AAPE ranks by), the normalised entropy
``H / ln C`` and the threshold-free ranking of the neurons preferring each class, lowest entropy first
(:func:`lowest_entropy_by_class`: no quantile bar involved)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from analysis.activation_probability import absent_neurons, inactive_neurons
from analysis.selection_defaults import MIN_ACTIVITY


def normalise(p: Tensor, has_nan: bool | None = None) -> Tensor:
    """Normalise over classes: ``q = p / p.sum(-1)``; NaN (absent entries, all-zero rows) become 0.

    ``p``: ``[..., C]`` → ``q``: ``[..., C]``. On finite input this is exactly LAPE's operation.
    ``has_nan``: whether ``p`` holds NaN, when the caller knows (None: looked up).

    >>> normalise(torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    tensor([[0.2500, 0.7500],
            [0.0000, 0.0000]])
    """
    if has_nan is None:
        has_nan = bool(torch.isnan(p).any())
    if has_nan:
        p = torch.nan_to_num(p, nan=0.0)
    q = p / p.sum(dim=-1, keepdim=True)
    q[torch.isnan(q)] = 0
    return q


def entropy(q: Tensor) -> Tensor:
    """Shannon entropy (natural log, ``0 log 0 = 0``) over the last axis: ``[..., C]`` → ``[...]``.

    >>> entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    tensor([0.6931, -0.0000])
    """
    log_q = torch.where(q > 0, q.log(), 0)
    return -torch.sum(q * log_q, dim=-1)


def normalised_entropy(over_zero: Tensor) -> Tensor:
    """``H(q) / ln C`` of every neuron, ``[L, N, C]`` → float32 ``[L, N]`` in [0, 1] (the quantity AAPE
    ranks by, without any quantile bar): 0 = fires for one class only, 1 = equally for all. NaN for absent
    neurons and for dead ones (``p = 0`` for every class: no distribution over classes to measure).

    >>> normalised_entropy(torch.tensor([[[0.9, 0.0], [0.5, 0.5], [0.0, 0.0]]]))
    tensor([[0., 1., nan]])
    """
    p = over_zero.float()
    if p.dim() != 3 or p.shape[-1] < 2:
        raise ValueError(f"over_zero must be [L, N, C] with C >= 2, got shape {tuple(p.shape)}")
    p0 = torch.nan_to_num(p, nan=0.0)
    h = entropy(normalise(p0, False)).abs() / math.log(p.shape[-1])  # abs: no -0.0
    h[absent_neurons(p) | (p0.sum(-1) == 0)] = float("nan")
    return h


def lowest_entropy_by_class(
    over_zero: Tensor, k: int, min_activity: float = MIN_ACTIVITY
) -> list[list[tuple[int, int]]]:
    """For each class, up to ``k`` neurons ``(layer, neuron)`` that prefer it (their largest activation
    probability is for that class; ties: the lowest class index), lowest entropy first (ties by (layer,
    neuron)). Absent and dead neurons are left out (see :func:`normalised_entropy`), and so are the
    neurons below ``min_activity`` in every class (:func:`inactive_neurons`). No quantile bar is applied:
    every model has such neurons, whether or not the selection's bars select any.

    >>> p = torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.3], [0.0, 0.0]]])  # L=1, N=4, C=2
    >>> lowest_entropy_by_class(p, 2)
    [[(0, 0), (0, 1)], [(0, 2)]]
    """
    h = normalised_entropy(over_zero)
    h[inactive_neurons(over_zero, min_activity)] = float("nan")
    L, N = h.shape
    pref = torch.nan_to_num(over_zero.float(), nan=-1.0).argmax(-1)  # first maximum
    flat_h, flat_pref = h.flatten(), pref.flatten()
    order = torch.sort(torch.nan_to_num(flat_h, nan=float("inf")), stable=True).indices
    order = order[~torch.isnan(flat_h[order])]
    out = []
    for c in range(over_zero.shape[-1]):
        idx = order[flat_pref[order] == c][: int(k)].tolist()
        out.append([(i // N, i % N) for i in idx])
    return out
