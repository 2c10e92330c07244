"""How stable is each class's AAPE neuron set? Resampling and a threshold sweep.

Resampling scheme (memory bounded: one ``[L, N, C]`` replicate at a time, nothing per clip)
---------------------------------------------------------------------------------------------
The statistics hold only totals (``count[L, N, C]``, ``n_tokens[C]``, ``n_clips[C]``), so a clip bootstrap
(resample clips with replacement, recount) is impossible without per-clip counts. We use a
**parametric bootstrap of the totals** instead: for every replicate, each class's probabilities are redrawn
as ``p*[l, n, c] = Binomial(n_eff[c], p[l, n, c]) / n_eff[c]`` and the selection is rerun on ``p*`` with the
same options. Two choices of the effective sample size:

* ``scheme="clips"`` (default): ``n_eff = n_clips``. If ``r_i`` is clip i's firing rate of a neuron, the
  clip bootstrap gives ``Var(mean r) = Var(r) / n_clips`` and ``Var(r) <= p (1 - p)`` for rates in [0, 1], so
  this draw has *at least* the clip bootstrap's variance per entry: a conservative (pessimistic) stability
  estimate. It is exact when every clip either fires on all its tokens or on none.
* ``scheme="tokens"``: ``n_eff = n_tokens`` (per site ``n_tokens_site`` when recorded) treats every counted
  position as independent, which ignores
  the strong correlation of tokens within a clip: an optimistic bound.

The truth (clip bootstrap) lies between the two for each entry. Both draw neurons and classes
independently, whereas a real clip bootstrap moves all neurons of a clip together (a neuron's
probabilities across classes stay independent, because classes have disjoint clips unless multi-label). The
per-class Jaccard between the replicate's set and the full-data set is summarised by its mean and a 95%
percentile interval over replicates (replicates where both sets are empty are undefined and counted in
``n_undefined``).

Threshold sweep
---------------
Every combination of ``top_rate`` × ``filter_rate`` × ``activation_bar_ratio`` of the grid is run on the
full data; per class the set size and the Jaccard to the set at the reference thresholds are reported.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analysis.aape import Identification, Mode, identify
from analysis.overlap import jaccard, paired_jaccard

log = logging.getLogger(__name__)

Scheme = Literal["clips", "tokens"]
SWEEP_TOP_RATES = (0.005, 0.01, 0.02, 0.05)
SWEEP_FILTER_RATES = (0.90, 0.95, 0.99)
SWEEP_BAR_RATIOS = (0.90, 0.95, 0.99)
#: Bootstrap replicates unless a caller asks for another number.
REPLICATES = 100


def resample_probabilities(p: Tensor, n_eff: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One parametric replicate ``Binomial(n_eff, p) / n_eff`` of ``p [L, N, C]``; ``n_eff`` is ``[C]``
    or per site ``[L, C]``. NaN stays NaN; a class with ``n_eff == 0`` becomes NaN.

    >>> p = torch.tensor([[[0.0, 1.0, float("nan")]]])
    >>> resample_probabilities(p, torch.tensor([10, 10, 10]), torch.Generator().manual_seed(0))
    tensor([[[0., 1., nan]]])
    """
    L, _, C = p.shape
    if n_eff.shape == (L, C):
        n_eff = n_eff[:, None, :]
    elif n_eff.shape != (C,):
        raise ValueError(f"n_eff must be [C={C}] or [L={L}, C={C}], got {tuple(n_eff.shape)}")
    nan = torch.isnan(p)
    n = n_eff.double().clamp(min=0).expand(p.shape).contiguous()
    draw = torch.binomial(n.float(), torch.nan_to_num(p, nan=0.0).float(), generator=generator)
    out = (draw.double() / n).float()
    out[nan] = float("nan")
    return out


def _masks(r: Identification) -> Tensor:
    return r.class_masks().flatten(1)  # [C, L*N]


def _quiet_identify(p: Tensor, **kw: Any) -> Identification:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return identify(p, **kw)


def bootstrap_stability(
    p: Tensor,
    n_eff: Tensor,
    classes: list[str],
    *,
    replicates: int = REPLICATES,
    seed: int = 0,
    **select: Any,
) -> pd.DataFrame:
    """Per-class stability of the AAPE sets under :func:`resample_probabilities`.

    ``p [L, N, C]``, ``n_eff [C]``; ``select`` are the :func:`analysis.aape.identify` arguments.
    Returns one row per class: ``class, n_neurons`` (full-data set size), ``mean_size, size_low,
    size_high`` (replicate set sizes: mean and 2.5/97.5 percentiles), ``mean_jaccard, jaccard_low,
    jaccard_high`` (Jaccard to the full-data set), ``n_undefined`` (replicates with both sets empty),
    ``replicates``.
    """
    if replicates < 2:
        raise ValueError(f"replicates must be >= 2, got {replicates}")
    ref = _masks(_quiet_identify(p, **select))
    C = ref.shape[0]
    g = torch.Generator().manual_seed(seed)
    jac = np.full((replicates, C), np.nan)
    sizes = np.zeros((replicates, C))
    for b in range(replicates):
        m = _masks(_quiet_identify(resample_probabilities(p, n_eff, g), **select))
        sizes[b] = m.sum(1).numpy()
        jac[b] = paired_jaccard(m, ref).numpy()
    rows = []
    for c, name in enumerate(classes):
        j = jac[:, c][np.isfinite(jac[:, c])]
        rows.append(
            {
                "class": name,
                "n_neurons": int(ref[c].sum()),
                "mean_size": float(sizes[:, c].mean()),
                "size_low": float(np.percentile(sizes[:, c], 2.5)),
                "size_high": float(np.percentile(sizes[:, c], 97.5)),
                "mean_jaccard": float(j.mean()) if j.size else float("nan"),
                "jaccard_low": float(np.percentile(j, 2.5)) if j.size else float("nan"),
                "jaccard_high": float(np.percentile(j, 97.5)) if j.size else float("nan"),
                "n_undefined": int(replicates - j.size),
                "replicates": replicates,
            }
        )
    return pd.DataFrame(rows)


def threshold_sweep(
    p: Tensor,
    classes: list[str],
    *,
    reference: dict[str, float],
    mode: Mode = "default",
    top_rates: Sequence[float] = SWEEP_TOP_RATES,
    filter_rates: Sequence[float] = SWEEP_FILTER_RATES,
    bar_ratios: Sequence[float] = SWEEP_BAR_RATIOS,
) -> pd.DataFrame:
    """Set sizes and Jaccard to the reference thresholds over a grid.

    ``reference`` = ``{"top_rate", "filter_rate", "activation_bar_ratio"}``. Rows: one per setting × class
    (``class`` = name) plus one per setting with ``class="__all__"`` (union of the class sets). Columns:
    ``top_rate, filter_rate, activation_bar_ratio, is_reference, class, n_neurons, reference_n_neurons,
    jaccard_to_reference, n_selected, warnings``.
    """
    ref = _quiet_identify(p, mode=mode, **reference)
    ref_m = _masks(ref)
    ref_all = ref_m.any(0)
    rows = []
    for tr, fr, ar in itertools.product(top_rates, filter_rates, bar_ratios):
        try:
            r = _quiet_identify(p, mode=mode, top_rate=tr, filter_rate=fr, activation_bar_ratio=ar)
        except ValueError as e:  # e.g. top_rate too small for a tiny model
            log.warning("sweep setting top_rate=%s filter_rate=%s bar=%s skipped: %s", tr, fr, ar, e)
            continue
        m = _masks(r)
        is_ref = (tr, fr, ar) == (reference["top_rate"], reference["filter_rate"], reference["activation_bar_ratio"])
        base = {"top_rate": tr, "filter_rate": fr, "activation_bar_ratio": ar, "is_reference": is_ref}
        sizes, ref_sizes = m.sum(1).tolist(), ref_m.sum(1).tolist()
        jac = paired_jaccard(m, ref_m).tolist()
        for c, name in enumerate(classes):
            rows.append(
                {
                    **base,
                    "class": name,
                    "n_neurons": int(sizes[c]),
                    "reference_n_neurons": int(ref_sizes[c]),
                    "jaccard_to_reference": jac[c],
                    "n_selected": r.n_selected,
                    "warnings": "",
                }
            )
        u = m.any(0)
        rows.append(
            {
                **base,
                "class": "__all__",
                "n_neurons": int(u.sum()),
                "reference_n_neurons": int(ref_all.sum()),
                "jaccard_to_reference": jaccard(u, ref_all),
                "n_selected": r.n_selected,
                "warnings": " | ".join(r.warnings),
            }
        )
    return pd.DataFrame(rows)
