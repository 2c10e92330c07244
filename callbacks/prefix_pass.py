"""The ``expand`` passes of the ablation callback, sharing the forward before each pass's earliest ablated site.

A condition changes nothing before the first neuron site where its mask has a neuron, so the conditions of
a pass need the encoder's forward only from the earliest such site among them. When the encoder can resume
at a site (``encoder.supports_resume``, :mod:`lightning_modules.encoders.resume`) the batch runs once up to
the input of the sites the passes start at (one shared pass per batch), then each pass runs the rest on the
batch repeated over its conditions. The conditions are ordered by earliest site (latest first) before they
are cut into passes of ``per_pass``, so there are as many passes as without sharing and each starts as late
as its conditions allow. The predictions are those of the full forward (same rows, same chunks).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from analysis import ablation as A


def earliest_site(cond: A.Condition) -> Optional[int]:
    """Index of the first site where ``cond.mask`` ``[L, N]`` ablates a neuron (None: none)."""
    hit = cond.mask.any(dim=1).nonzero()
    return int(hit[0]) if hit.numel() else None


def plan_passes(
    conds: Sequence[A.Condition], ids: Sequence[int], per_pass: int, n_sites: int
) -> list[tuple[int, list[int]]]:
    """``(start site, condition ids)`` of each pass: ``ids`` ordered by earliest ablated site (latest first,
    a condition without one counts as the last site), cut into passes of ``per_pass``; a pass starts at its
    earliest condition's site.

    >>> class C:  # a stand-in holding only a mask
    ...     def __init__(self, rows): self.mask = torch.tensor(rows, dtype=torch.bool)
    >>> cs = [C([[1], [0], [0]]), C([[0], [0], [1]]), C([[0], [1], [0]]), C([[0], [0], [0]])]
    >>> plan_passes(cs, [0, 1, 2, 3], 2, 3)
    [(2, [1, 3]), (0, [2, 0])]
    """
    site = {i: earliest_site(conds[i]) for i in ids}
    site = {i: n_sites - 1 if s is None else s for i, s in site.items()}
    order = sorted(ids, key=lambda i: -site[i])
    passes = [order[s : s + per_pass] for s in range(0, len(order), per_pass)]
    return [(min(site[i] for i in p), p) for p in passes]


def expand_predictions(
    conds: Sequence[A.Condition],
    ids: Sequence[int],
    per_pass: int,
    pl_module: Any,
    audio: Tensor,
    lengths: Optional[Tensor],
    set_rows: Callable[[Optional[tuple]], None],
    share: bool,
) -> dict[int, Tensor]:
    """{condition id: predictions ``[B]``} of the conditions ``ids`` on one batch, ``per_pass`` per forward.

    ``set_rows((LongTensor ids, B))`` tells the site hooks which condition each row block is (None: no
    ablation, during the shared prefix). ``share``: resume at each pass's earliest site (needs
    ``pl_module.encoder.supports_resume`` and ``pl_module.probe``); else one full forward per pass."""
    b = audio.shape[0]
    encoder = pl_module.encoder
    out: dict[int, Tensor] = {}
    if not ids:  # only the baseline ran on this batch (e.g. a model without any set to ablate)
        return out
    if not share:
        for s in range(0, len(ids), per_pass):
            p = list(ids[s : s + per_pass])
            set_rows((torch.as_tensor(p), b))
            a = audio.repeat(len(p), *([1] * (audio.dim() - 1)))
            ln = None if lengths is None else lengths.repeat(len(p))
            out.update(zip(p, pl_module(a, ln).argmax(-1).view(len(p), b)))
        return out
    passes = plan_passes(conds, ids, per_pass, len(encoder.neuron_sites))
    set_rows(None)
    states = encoder.forward_to(audio, lengths, sorted({s for s, _ in passes}))
    for site, p in passes:
        set_rows((torch.as_tensor(p), b))
        logits = pl_module.probe(encoder.forward_from(states[site], len(p)))
        out.update(zip(p, logits.argmax(-1).view(len(p), b)))
    return out
