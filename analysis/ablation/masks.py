"""Neuron sets as masks: BoolTensor ``[L, N]`` over (site, neuron), ``N = max(site_neurons)``, False where a
ragged site has no such neuron; built from the LAPE/AAPE format, from explicit ``[[layer, neuron], ...]``
lists, from a ranking (top k), and the study authors' index+1 control."""

from __future__ import annotations

import logging
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def existing_mask(site_neurons: Sequence[int], n_max: Optional[int] = None) -> Tensor:
    """BoolTensor ``[L, N]``: True where neuron n exists at site l (``n < site_neurons[l]``)."""
    n_max = int(max(site_neurons)) if n_max is None else int(n_max)
    ar = torch.arange(n_max)
    return ar[None, :] < torch.as_tensor(list(site_neurons))[:, None]


def mask_from_layers(layers: Sequence[Tensor], site_neurons: Sequence[int], source: str = "neurons") -> Tensor:
    """Mask ``[L, N]`` from the LAPE/AAPE format (list over sites of LongTensor neuron ids).

    Raises ValueError naming ``source`` on a wrong number of sites or an id outside its site."""
    L = len(site_neurons)
    if len(layers) != L:
        raise ValueError(f"{source}: {len(layers)} layers given, the encoder has {L} neuron sites")
    mask = torch.zeros(L, int(max(site_neurons)), dtype=torch.bool)
    for l, ids in enumerate(layers):
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if ids.numel() == 0:
            continue
        bad = ids[(ids < 0) | (ids >= site_neurons[l])]
        if bad.numel():
            raise ValueError(f"{source}: layer {l} has neuron ids {bad.tolist()} outside 0..{site_neurons[l] - 1}")
        mask[l, ids] = True
    return mask


def mask_from_pairs(pairs: Iterable[Sequence[int]], site_neurons: Sequence[int], source: str = "neurons") -> Tensor:
    """Mask ``[L, N]`` from an explicit list ``[[layer, neuron], ...]`` (the study's format)."""
    L = len(site_neurons)
    mask = torch.zeros(L, int(max(site_neurons)), dtype=torch.bool)
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"{source}: entry {i} is {list(pair)!r}; expected [layer, neuron]")
        l, n = int(pair[0]), int(pair[1])
        if not 0 <= l < L:
            raise ValueError(f"{source}: entry {i} [{l}, {n}]: layer {l} outside 0..{L - 1}")
        if not 0 <= n < site_neurons[l]:
            raise ValueError(
                f"{source}: entry {i} [{l}, {n}]: neuron {n} outside 0..{site_neurons[l] - 1} of layer {l}"
            )
        mask[l, n] = True
    return mask


def mask_to_pairs(mask: Tensor) -> list[list[int]]:
    """``[[layer, neuron], ...]`` of a mask, sorted by (layer, neuron)."""
    return [[int(l), int(n)] for l, n in mask.nonzero().tolist()]


def index_plus_one(mask: Tensor, site_neurons: Sequence[int], source: str = "neurons") -> Tensor:
    """The study authors' control: every selected neuron's index + 1 in the same layer (one draw).

    The last neuron of a site wraps around to neuron 0 (the authors' lists never hit that case; a
    warning is logged). As in the authors' configs, a +1 neighbour that is itself in the set is not
    replaced, so the control can be smaller than the set."""
    out = torch.zeros_like(mask)
    for l, n in mask.nonzero().tolist():
        m = n + 1
        if m >= site_neurons[l]:
            log.warning("%s: index+1 control of [%d, %d] wraps around to [%d, 0]", source, l, n, l)
            m = 0
        out[l, m] = True
    return out


def topk_mask(ranked: Sequence[tuple[int, int]], k: int, shape: tuple[int, int]) -> Tensor:
    """Mask of the first ``k`` (layer, neuron) pairs of ``ranked`` (best first)."""
    m = torch.zeros(shape, dtype=torch.bool)
    for l, n in list(ranked)[:k]:
        m[l, n] = True
    return m
