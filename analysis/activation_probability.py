"""Activation probabilities ``p [L, N, C]`` (the share of a class's counted positions where a neuron is
> 0) and the two kinds of neurons every selection leaves out: absent ones (NaN in every class, the padding
of ragged sites) and inactive ones (below ``min_activity`` in every class)."""

from __future__ import annotations

import torch
from torch import Tensor

from analysis.selection_defaults import MIN_ACTIVITY


def absent_neurons(over_zero: Tensor) -> Tensor:
    """BoolTensor ``[L, N]``: neurons that do not exist, i.e. NaN for **every** class (the padding of
    ragged sites). A NaN in some classes only (a class with nothing counted) does not make a neuron absent.

    >>> absent_neurons(torch.tensor([[[0.5, float("nan")], [float("nan"), float("nan")]]]))
    tensor([[False,  True]])
    """
    return torch.isnan(over_zero).all(dim=-1)


def activation_probability(count: Tensor, n_tokens: Tensor, site_neurons: list[int] | None = None) -> Tensor:
    """Conditional activation probability ``p[l, n, c] = count[l, n, c] / n_tokens[c]``.

    Args:
        count: ``[L, N, C]`` integer counts of positions with activation > 0.
        n_tokens: ``[C]`` counted positions per class.
        site_neurons: optional neurons per site (length ``L``); entries ``n >= site_neurons[l]`` become
            NaN (absent neurons of ragged sites).

    Returns:
        float32 ``[L, N, C]``. A class with ``n_tokens == 0`` gives NaN in its column.

    >>> activation_probability(torch.tensor([[[1, 0], [2, 4]]]), torch.tensor([2, 4]))
    tensor([[[0.5000, 0.0000],
             [1.0000, 1.0000]]])
    >>> activation_probability(torch.tensor([[[1], [0]], [[1], [1]]]), torch.tensor([2]), [1, 2])[..., 0]
    tensor([[0.5000,    nan],
            [0.5000, 0.5000]])
    """
    if count.dim() != 3:
        raise ValueError(f"count must be [L, N, C], got shape {tuple(count.shape)}")
    if n_tokens.shape != (count.shape[-1],):
        raise ValueError(f"n_tokens must be [C={count.shape[-1]}], got shape {tuple(n_tokens.shape)}")
    p = (count.double() / n_tokens.double()).float()
    if site_neurons is not None:
        if len(site_neurons) != count.shape[0]:
            raise ValueError(f"site_neurons has {len(site_neurons)} entries for {count.shape[0]} sites")
        for l, n in enumerate(site_neurons):
            p[l, int(n) :] = float("nan")
    return p


def inactive_neurons(over_zero: Tensor, min_activity: float = MIN_ACTIVITY) -> Tensor:
    """``[L, N, C]`` → bool ``[L, N]``: present neurons whose activation probability is below
    ``min_activity`` in every class (absent neurons are not counted; ``min_activity = 0``: none).

    >>> inactive_neurons(torch.tensor([[[0.005, 0.0], [0.5, 0.0], [float("nan")] * 2]])).tolist()
    [[True, False, False]]
    """
    p = torch.nan_to_num(over_zero.float(), nan=0.0)
    return (p.amax(-1) < float(min_activity)) & ~absent_neurons(over_zero)
