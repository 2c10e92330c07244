"""Tuning curves of units from the counts of a stimulus set, and the numbers read off them.

A stimulus set (:mod:`datamodules.stimuli`) is a task whose classes are values ``x`` of one parameter, so
the statistics of one counting pass over it (:mod:`analysis.activation_stats`) hold, per unit (neuron or
any other unit site — an SAE's features are one more site) and value,

* ``p_active`` = P(act > 0 | value): the conditional activation probability of the class (``over_zero``);
* ``mean``     = the mean activation over the value's counted positions (needs the per-class sums
  ``act_sum_class`` of a pass run with ``class_sums``).

Shapes: L sites, N neurons (padded), V values (sorted ascending), U units (rows of a table).

From one curve ``r[V]`` of a unit (:func:`curve_summary`):

* **preferred value** — the centre of the run of values at the curve's maximum that starts at its first
  maximum (a plateau's middle; on an unordered axis the first maximum's value);
* **bandwidth** — the full width at half maximum: the extent of the values around the peak run where ``r``
  stays at or above ``trough + (peak - trough) / 2``, its edges interpolated linearly between the last
  value above and the first below; a region that reaches the end of the value grid stops there
  (``bounded`` is False); NaN on an unordered axis;
* **selectivity index** — ``(peak - m) / (peak + m)`` with ``m`` the mean response to the other values: 0
  for a flat curve, 1 for a unit that responds to one value only.

A flat curve (``peak == trough``, e.g. a unit that never fires) has no preferred value or bandwidth (NaN).
"""

from __future__ import annotations

import math
import re
from statistics import NormalDist
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analysis.activation_stats import over_zero

CURVES = ("p_active", "mean")
#: Columns of a tuning table, in order (the first five are the contract of ``tuning/<dimension>.csv``).
TUNING_COLUMNS = ["unit", "site", "preferred_value", "bandwidth", "selectivity", "layer", "peak", "trough", "bounded"]
_OCTAVE = re.compile(r"octave_(-?\d+)")


def tuning_curves(stats: dict[str, Any], values: Sequence[float]) -> dict[str, Tensor]:
    """The curves of every unit from ``stats.pt``-style totals whose class ``c`` is value ``values[c]``.

    Returns ``values`` float64 ``[V]`` (sorted ascending), ``order`` int64 ``[V]`` (class index of each
    sorted value), ``p_active`` float64 ``[L, N, V]`` and, when the totals have ``act_sum_class``,
    ``mean`` float64 ``[L, N, V]``; absent neurons are NaN.

    >>> st = {"count": torch.tensor([[[1, 4], [0, 2]]]), "n_tokens_site": torch.tensor([[4, 4]]),
    ...       "act_sum_class": torch.tensor([[[2.0, 8.0], [0.0, 1.0]]], dtype=torch.float64),
    ...       "site_neurons": [2], "level": "token"}
    >>> c = tuning_curves(st, [70.0, 60.0])
    >>> c["values"].tolist(), c["p_active"][0].tolist(), c["mean"][0, 0].tolist()
    ([60.0, 70.0], [[1.0, 0.25], [0.5, 0.0]], [2.0, 0.5])
    """
    vals = torch.as_tensor([float(v) for v in values], dtype=torch.float64)
    C = stats["count"].shape[-1]
    if vals.numel() != C:
        raise ValueError(f"tuning_curves: {vals.numel()} values for {C} classes")
    order = torch.argsort(vals, stable=True)
    site_neurons = [int(n) for n in stats["site_neurons"]]
    p = over_zero(stats, site_neurons, stats.get("level", "token")).to(torch.float64)
    out = {"values": vals[order], "order": order, "p_active": p[..., order]}
    if "act_sum_class" in stats:
        n = stats["n_tokens_site"].to(torch.float64)[:, None, :]
        m = stats["act_sum_class"].to(torch.float64) / n
        for l, k in enumerate(site_neurons):
            m[l, k:] = float("nan")
        out["mean"] = m[..., order]
    return out


def _first(mask: np.ndarray, default: int) -> np.ndarray:
    """Per row, the first column where ``mask`` holds, else ``default``."""
    return np.where(mask.any(1), mask.argmax(1), default)


def _last(mask: np.ndarray, default: int) -> np.ndarray:
    """Per row, the last column where ``mask`` holds, else ``default``."""
    V = mask.shape[1]
    return np.where(mask.any(1), V - 1 - mask[:, ::-1].argmax(1), default)


def _edge(x: np.ndarray, r: np.ndarray, h: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Where the curve crosses ``h`` between value index ``outside`` (below h) and ``inside`` (at or above)."""
    rows = np.arange(len(r))
    ri, ro = r[rows, inside], r[rows, outside]
    xi, xo = x[inside], x[outside]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(ri > ro, (ri - h) / (ri - ro), 0.0)
    return xi + t * (xo - xi)


def curve_summary(
    curves: np.ndarray | Tensor, values: Sequence[float], categorical: bool = False
) -> dict[str, np.ndarray]:
    """Preferred value, bandwidth, selectivity, peak, trough and ``bounded`` of each curve (module doc).

    ``curves`` ``[U, V]`` over ascending ``values`` ``[V]``; each output is ``[U]``.

    >>> s = curve_summary([[0, 0, 1, 1, 1], [0, 1, 0, 0, 0], [0.2, 0.2, 0.2, 0.2, 0.2]], [60, 62, 64, 66, 68])
    >>> s["preferred_value"].tolist(), s["bandwidth"].tolist(), s["bounded"].tolist()
    ([66.0, 62.0, nan], [5.0, 2.0, nan], [False, True, False])
    >>> [round(v, 3) for v in s["selectivity"].tolist()]
    [0.333, 1.0, 0.0]
    """
    r = np.asarray(curves, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    U, V = r.shape
    if V != len(x) or V < 2 or np.any(np.diff(x) <= 0):
        raise ValueError(f"curve_summary: curves [U, {V}] need {V} >= 2 strictly ascending values, got {x.tolist()}")
    rows = np.arange(U)
    valid = np.isfinite(r).all(1)
    rr = np.where(valid[:, None], r, 0.0)
    peak, trough = rr.max(1), rr.min(1)
    flat = ~valid | (peak <= trough)
    at_max = rr == peak[:, None]
    i0 = rr.argmax(1)
    cols = np.arange(V)[None, :]
    i1 = _first(~at_max & (cols > i0[:, None]), V) - 1
    h = trough + (peak - trough) / 2
    above = rr >= h[:, None]
    a = _last(~above & (cols < i0[:, None]), -1) + 1
    b = _first(~above & (cols > i1[:, None]), V) - 1
    left = np.where(a > 0, _edge(x, rr, h, a, np.maximum(a - 1, 0)), x[0])
    right = np.where(b < V - 1, _edge(x, rr, h, b, np.minimum(b + 1, V - 1)), x[-1])
    preferred = x[i0] if categorical else (x[i0] + x[i1]) / 2
    others = (rr.sum(1) - rr[rows, i0]) / (V - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = np.where(peak + others > 0, (peak - others) / (peak + others), 0.0)
    nan = np.full(U, np.nan)
    return {
        "preferred_value": np.where(flat, nan, preferred),
        "bandwidth": np.where(flat | categorical, nan, right - left),
        "selectivity": np.where(valid, np.where(flat, 0.0, sel), nan),
        "peak": np.where(valid, peak, nan),
        "trough": np.where(valid, trough, nan),
        "bounded": ~flat & (a > 0) & (b < V - 1) & (not categorical),
    }


def tuning_table(
    curves: Tensor,
    values: Sequence[float],
    sites: Sequence[str],
    site_neurons: Sequence[int],
    categorical: bool = False,
) -> pd.DataFrame:
    """One row per existing unit of ``curves`` ``[L, N, V]``: the columns :data:`TUNING_COLUMNS` (``unit``
    is the unit's index in its site, ``layer`` the site's index).

    >>> t = tuning_table(torch.tensor([[[0., 1.], [1., 0.]], [[1., 1.], [0., 0.]]]), [1.0, 2.0], ["a", "b"], [2, 1])
    >>> t[["unit", "site", "preferred_value"]].values.tolist()
    [[0, 'a', 2.0], [1, 'a', 1.0], [0, 'b', nan]]
    """
    L = len(sites)
    if curves.dim() != 3 or curves.shape[0] != L:
        raise ValueError(f"tuning_table: curves of shape {tuple(curves.shape)} for {L} sites")
    layer = np.concatenate([np.full(int(n), l) for l, n in enumerate(site_neurons)])
    unit = np.concatenate([np.arange(int(n)) for n in site_neurons])
    r = curves.to(torch.float64).numpy()[layer, unit]
    s = curve_summary(r, values, categorical)
    df = pd.DataFrame({"unit": unit, "site": [sites[l] for l in layer], **s, "layer": layer})
    return df[TUNING_COLUMNS]


def octave_range(label: str) -> Optional[tuple[float, float]]:
    """The MIDI range ``[lo, hi)`` of a class named ``octave_<o>`` (A4 = MIDI 69, octave ``o`` spans
    ``12 (o + 1)`` … ``12 (o + 2)``), None for any other name.

    >>> octave_range("octave_4"), octave_range("jazz")
    ((60.0, 72.0), None)
    """
    m = _OCTAVE.fullmatch(label)
    if m is None:
        return None
    o = int(m.group(1))
    return 12.0 * (o + 1), 12.0 * (o + 2)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n``; ``(nan, nan)`` for ``n = 0``.

    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    >>> wilson_interval(0, 5)[0], wilson_interval(5, 5)[1]
    (0.0, 1.0)
    """
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (0.0 if k == 0 else max(0.0, mid - half)), (1.0 if k == n else min(1.0, mid + half))


def hypergeom_pmf(N: int, K: int, n: int) -> np.ndarray:
    """``P(X = k)`` for ``k = 0 … n``: ``X`` successes among ``n`` units drawn without replacement from
    ``N`` of which ``K`` are successes (exact, log space).

    >>> hypergeom_pmf(4, 2, 2).round(4).tolist()
    [0.1667, 0.6667, 0.1667]
    """
    if not 0 <= K <= N or not 0 <= n <= N:
        raise ValueError(f"hypergeom_pmf needs 0 <= K, n <= N, got N={N}, K={K}, n={n}")
    lc = lambda a, b: math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)  # noqa: E731
    out = np.zeros(n + 1)
    for k in range(max(0, n - (N - K)), min(n, K) + 1):
        out[k] = math.exp(lc(K, k) + lc(N - K, n - k) - lc(N, n))
    return out


def range_share(in_set: int, n_set: int, in_all: int, n_all: int, level: float = 0.95) -> dict[str, float]:
    """A set of ``n_set`` units of which ``in_set`` prefer a value in a range, against random sets of the
    same size drawn from the ``n_all`` units (``in_all`` of them in the range): the fraction with its
    Wilson interval, the random fraction's central ``level`` interval and mean (exact hypergeometric), and
    the one-sided p-value ``P(random >= in_set)``.

    >>> r = range_share(6, 8, 20, 100)
    >>> round(r["fraction"], 3), r["random_mean"], round(r["p_value"], 5)
    (0.75, 0.2, 0.00069)
    """
    pmf = hypergeom_pmf(n_all, in_all, n_set)
    cdf = np.cumsum(pmf)
    a = (1 - level) / 2
    lo_k = int(np.searchsorted(cdf, a - 1e-12))
    hi_k = int(np.searchsorted(cdf, 1 - a - 1e-12))
    lo, hi = wilson_interval(in_set, n_set, level)
    return {
        "in_range": in_set,
        "n_units": n_set,
        "fraction": in_set / n_set if n_set else math.nan,
        "ci_lo": lo,
        "ci_hi": hi,
        "random_mean": in_all / n_all if n_all else math.nan,
        "random_lo": lo_k / n_set if n_set else math.nan,
        "random_hi": hi_k / n_set if n_set else math.nan,
        "p_value": float(min(1.0, pmf[in_set:].sum())) if n_set else math.nan,
    }
