"""The LAPE mask format of selected neurons: class → layer → ascending LongTensor of neuron ids (what
``neurons.pt`` holds), built from a selection (:func:`per_class_lists`) and turned into boolean masks
``[C, L, N]`` (:func:`neurons_to_masks`)."""

from __future__ import annotations

import torch
from torch import Tensor


def per_class_lists(selected: Tensor, assignments: Tensor, num_layers: int, drop_empty: bool) -> list[list[Tensor]]:
    """class → layer → ascending LongTensor of neuron ids, from ``selected [K, 2]`` (layer, neuron) and
    ``assignments [K, C]`` (the classes of each selected neuron); ``drop_empty``: LAPE's ``bincount``
    truncation (classes after the last class with a neuron are left out).

    >>> lists = per_class_lists(torch.tensor([[1, 2], [0, 3]]), torch.tensor([[True], [True]]), 2, False)
    >>> [[t.tolist() for t in layers] for layers in lists]
    [[[3], [2]]]
    """
    C = assignments.shape[1]
    cls, k = torch.where(assignments.T)  # sorted by class, then rank
    n_out = C
    if drop_empty:
        n_out = int(cls.max().item()) + 1 if cls.numel() else 0
    layer, neuron = selected[k, 0], selected[k, 1]
    n_max = int(neuron.max().item()) + 1 if neuron.numel() else 1
    key = (cls * num_layers + layer) * n_max + neuron  # one sort orders by (class, layer, neuron)
    order = torch.sort(key).indices
    neuron = neuron[order].long()
    sizes = torch.bincount(cls * num_layers + layer, minlength=C * num_layers).tolist()
    chunks = torch.split(neuron, sizes)
    return [[chunks[c * num_layers + l].clone() for l in range(num_layers)] for c in range(n_out)]


def neurons_to_masks(neurons: list[list[Tensor]], num_classes: int, shape: tuple[int, int]) -> Tensor:
    """LAPE mask list → ``[C, L, N]`` bool; classes missing from a (``lape``-truncated) list are empty.

    >>> neurons_to_masks([[torch.tensor([1]), torch.tensor([], dtype=torch.long)]], 2, (2, 3)).nonzero().tolist()
    [[0, 0, 1]]
    """
    L, N = shape
    m = torch.zeros(num_classes, L, N, dtype=torch.bool)
    if len(neurons) > num_classes:
        raise ValueError(f"neuron list has {len(neurons)} classes, expected at most {num_classes}")
    for c, layers in enumerate(neurons):
        if len(layers) != L:
            raise ValueError(f"class {c} of the neuron list has {len(layers)} layers, expected {L}")
        for l, ids in enumerate(layers):
            ids = torch.as_tensor(ids, dtype=torch.long)
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= N):
                raise ValueError(f"class {c} layer {l}: neuron ids outside [0, {N})")
            m[c, l, ids] = True
    return m
