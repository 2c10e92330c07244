"""Selector baselines beside AAPE: other rules that pick a class's neurons, tested the same way.

Each selector scores every neuron for every class, ``score [L, N, C]``, and takes for class ``c`` in each
layer ``l`` the ``sizes[c, l]`` best-scoring neurons — exactly as many per layer as the class's AAPE set,
so the selectors' sets have the same sizes, are ablated the same way and are tested against the same
size- and layer-matched random draws (draws of sets with equal per-layer sizes may be shared).

* ``contrast`` — one-vs-rest difference of activation probability: ``p[l, n, c] − mean_{c' != c}
  p[l, n, c']`` (the simple contrast selectors reported to beat entropy selectors on causal specificity);
* ``magnitude`` — the activation probability for the class itself, ``p[l, n, c]`` (how much the neuron
  fires for the class, with no comparison with the other classes: a neuron that fires for everything
  ranks high).

Absent neurons (NaN) and neurons below :data:`analysis.aape.MIN_ACTIVITY` in every class
(:func:`analysis.aape.inactive_neurons`) are never taken. Ties are broken by (layer, neuron).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from analysis.aape import MIN_ACTIVITY, absent_neurons, inactive_neurons

Selector = Literal["contrast", "magnitude"]
SELECTORS: tuple[str, ...] = ("contrast", "magnitude")


def contrast_scores(over_zero: Tensor) -> Tensor:
    """``[L, N, C]`` → ``[L, N, C]``: ``p_c − mean of the other classes' p`` (NaN → 0).

    >>> [round(v, 2) for v in contrast_scores(torch.tensor([[[0.9, 0.1, 0.2]]]))[0, 0].tolist()]
    [0.75, -0.45, -0.3]
    """
    p = torch.nan_to_num(over_zero.float(), nan=0.0)
    C = p.shape[-1]
    if C < 2:
        raise ValueError(f"contrast needs at least 2 classes, got shape {tuple(over_zero.shape)}")
    return p - (p.sum(-1, keepdim=True) - p) / (C - 1)


def magnitude_scores(over_zero: Tensor) -> Tensor:
    """``[L, N, C]`` → ``[L, N, C]``: the activation probability of the class itself (NaN → 0)."""
    return torch.nan_to_num(over_zero.float(), nan=0.0)


def scores(over_zero: Tensor, selector: Selector) -> Tensor:
    """The ``[L, N, C]`` scores of ``selector`` (:data:`SELECTORS`)."""
    if selector == "contrast":
        return contrast_scores(over_zero)
    if selector == "magnitude":
        return magnitude_scores(over_zero)
    raise ValueError(f"unknown selector {selector!r}; expected one of {SELECTORS}")


def top_per_layer(score: Tensor, sizes: Tensor, eligible: Tensor) -> Tensor:
    """Per class and layer, the ``sizes[c, l]`` eligible neurons of highest score (ties: lowest neuron id).

    Args:
        score: ``[L, N, C]``.
        sizes: int ``[C, L]`` neurons to take per class and layer.
        eligible: bool ``[L, N]``.
    Returns: bool ``[C, L, N]``.

    >>> s = torch.tensor([[[0.1], [0.9], [0.5], [0.9]]])  # L=1, N=4, C=1
    >>> top_per_layer(s, torch.tensor([[2]]), torch.tensor([[True, True, True, False]])).int().tolist()
    [[[0, 1, 1, 0]]]
    """
    L, N, C = score.shape
    out = torch.zeros(C, L, N, dtype=torch.bool)
    for c in range(C):
        for l in range(L):
            k = int(sizes[c, l])
            if not k:
                continue
            idx = eligible[l].nonzero().flatten()
            if k > idx.numel():
                raise ValueError(f"class {c} layer {l}: {k} neurons requested, {idx.numel()} eligible")
            order = torch.sort(-score[l, idx, c], stable=True).indices[:k]
            out[c, l, idx[order]] = True
    return out


def select(over_zero: Tensor, selector: Selector, sizes: Tensor, min_activity: float = MIN_ACTIVITY) -> Tensor:
    """The class sets ``[C, L, N]`` of ``selector`` with ``sizes [C, L]`` neurons per class and layer (the
    AAPE sets' sizes), from the activation probabilities ``over_zero [L, N, C]``.

    >>> p = torch.tensor([[[0.9, 0.8], [0.6, 0.0], [0.0, 0.3]]])  # L=1, N=3, C=2
    >>> select(p, "contrast", torch.tensor([[1], [1]])).int().tolist()
    [[[0, 1, 0]], [[0, 0, 1]]]
    >>> select(p, "magnitude", torch.tensor([[1], [1]])).int().tolist()
    [[[1, 0, 0]], [[1, 0, 0]]]
    """
    eligible = ~absent_neurons(over_zero) & ~inactive_neurons(over_zero, min_activity)
    return top_per_layer(scores(over_zero, selector), torch.as_tensor(sizes), eligible)
