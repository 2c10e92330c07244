"""When is a reported effect more than noise? Plain statistics for the report's claims (no scipy).

* :func:`binomial_sf` — the exact upper tail ``P(X >= k)`` of a binomial, summed in log space
  (``math.lgamma`` + log-sum-exp), so it stays exact for thousands of test clips.
* :func:`probe_above_chance` — one-sided binomial test of a probe's test accuracy against the chance rate
  :func:`chance_rate` (the larger of ``1 / C`` and the majority class's share of the test clips).
* :func:`empirical_interval` — the central interval of a sample (the random draws' deltas).
* :func:`below_interval` — a class's set is called *specific* only when its on-target change lies strictly
  below the interval of its matched random draws.

Thresholds of the claims live here: :data:`ALPHA`, :data:`LEVEL`, :data:`COARSE_DRAWS`,
:data:`UNSTABLE_JACCARD`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Significance level of the probe-above-chance test.
ALPHA = 0.05
#: Coverage of the random draws' interval.
LEVEL = 0.95
#: With fewer random draws than this, the 95 % interval rests on a handful of values (the report says so).
COARSE_DRAWS = 20
#: A class's set with a mean bootstrap Jaccard below this is called unstable.
UNSTABLE_JACCARD = 0.5


def log_binomial_pmf(k: int, n: int, p: float) -> float:
    """``log P(X = k)`` for ``X ~ Binomial(n, p)``, ``0 < p < 1``.

    >>> round(math.exp(log_binomial_pmf(2, 4, 0.5)), 6)
    0.375
    """
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_sf(k: int, n: int, p: float) -> float:
    """Exact ``P(X >= k)`` for ``X ~ Binomial(n, p)`` (the one-sided p-value of ``k`` successes).

    >>> round(binomial_sf(8, 10, 0.5), 12)  # (45 + 10 + 1) / 1024
    0.0546875
    >>> binomial_sf(0, 10, 0.3), binomial_sf(11, 10, 0.3), binomial_sf(3, 10, 0.0), binomial_sf(3, 10, 1.0)
    (1.0, 0.0, 0.0, 1.0)
    >>> f"{binomial_sf(600, 1000, 0.5):.3e}"
    '1.364e-10'
    """
    k, n = int(k), int(n)
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial_sf needs n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    logs = [log_binomial_pmf(i, n, p) for i in range(k, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def chance_rate(class_counts: Sequence[int]) -> float:
    """The accuracy a probe reaches without information: the larger of ``1 / C`` and the majority class's
    share of the clips (``class_counts``: clips per class of the test split).

    >>> chance_rate([10, 10, 10, 10]), chance_rate([30, 5, 5])
    (0.25, 0.75)
    """
    counts = [int(c) for c in class_counts]
    total = sum(counts)
    if not counts or total <= 0:
        raise ValueError(f"chance_rate needs clips, got class counts {counts}")
    return max(1.0 / len(counts), max(counts) / total)


def probe_above_chance(correct: int, n: int, chance: float, alpha: float = ALPHA) -> tuple[bool, float]:
    """One-sided binomial test of ``correct`` of ``n`` test clips against the rate ``chance``: returns
    (accuracy clearly above chance, p-value ``P(X >= correct)``).

    >>> probe_above_chance(12, 12, 1 / 6)[0], probe_above_chance(3, 12, 1 / 6)[0]
    (True, False)
    """
    p = binomial_sf(correct, n, chance)
    return p < alpha, p


def empirical_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Central ``level`` interval of a sample (linear-interpolated quantiles, NaN ignored); ``(nan, nan)``
    without values.

    >>> empirical_interval([0.0, -0.1, -0.2, 0.1, 0.0])
    (-0.19, 0.09)
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.round(np.quantile(x, a), 12)), float(np.round(np.quantile(x, 1 - a), 12))


def below_interval(value: float, lo: float) -> bool:
    """``value`` lies strictly below the interval starting at ``lo`` (False when either is NaN).

    >>> below_interval(-0.5, -0.1), below_interval(-0.1, -0.1), below_interval(-0.5, float("nan"))
    (True, False, False)
    """
    return bool(np.isfinite(value) and np.isfinite(lo) and value < lo)
