"""When is a reported effect more than noise? Plain statistics for the report's claims (no scipy).

* :func:`binomial_sf` — the exact upper tail ``P(X >= k)`` of a binomial, summed in log space
  (``math.lgamma`` + log-sum-exp), so it stays exact for thousands of test clips.
* :func:`probe_above_chance` — one-sided binomial test of a probe's test accuracy against the chance rate
  :func:`chance_rate` (the larger of ``1 / C`` and the majority class's share of the test clips).
* :func:`empirical_interval` — the central interval of a sample (the random draws' deltas).
* :func:`below_interval` — the on-target change lies strictly below an interval (descriptive only).
* :func:`monte_carlo_p` — the exact Monte-Carlo p-value of a set's change against its matched random draws
  (ties count against the claim; Besag–Clifford sequential form when drawing stopped early).
* :func:`holm`, :func:`benjamini_hochberg`, :func:`adjust_p` — the correction over every test of a run.
* :func:`wilson_interval` — the interval of a proportion (recall, accuracy) printed with it.
* :func:`paired_bootstrap_interval` — the interval of an on-target change over resampled test clips, from
  the clips the ablation lost and gained against the baseline.
* :func:`is_specific` / :func:`failed_criteria` — the one rule behind the word *specific*.

Thresholds of the claims live here: :data:`ALPHA`, :data:`LEVEL`, :data:`COARSE_DRAWS`,
:data:`UNSTABLE_JACCARD`, :data:`CORRECTIONS`, :data:`BOOTSTRAP_REPS`.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np

#: Significance level of the probe-above-chance test.
ALPHA = 0.05
#: Coverage of the random draws' interval.
LEVEL = 0.95
#: With fewer random draws than this, the 95 % interval rests on a handful of values (the report says so).
COARSE_DRAWS = 20
#: A class's set with a mean bootstrap Jaccard below this is called unstable.
UNSTABLE_JACCARD = 0.5
#: Multiple-comparison corrections: Holm (family-wise error, the default) and Benjamini–Hochberg (FDR).
CORRECTIONS = ("holm", "bh")
Correction = Literal["holm", "bh"]
#: Bootstrap resamples of the test clips behind each on-target change's interval.
BOOTSTRAP_REPS = 2000


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float; ``ValueError`` unless ``0 < alpha < 1``.

    >>> check_alpha(0.05)
    0.05
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be a level in (0, 1), got {alpha!r}")
    return float(alpha)


def log_binomial_pmf(k: int, n: int, p: float) -> float:
    """``log P(X = k)`` for ``X ~ Binomial(n, p)``, ``0 < p < 1``.

    >>> round(math.exp(log_binomial_pmf(2, 4, 0.5)), 6)
    0.375
    """
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


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


# ----------------------------------------------------------------------------------------------
# The exact test of a set against its matched random draws
# ----------------------------------------------------------------------------------------------
#: Two changes closer than this are a tie (recall changes are multiples of 1 / n clips).
TIE_TOLERANCE = 1e-12


def monte_carlo_p(
    set_delta: float, draw_deltas: Sequence[float], *, h: Optional[int] = None, max_draws: Optional[int] = None
) -> float:
    """Monte-Carlo p-value of a set's change ``set_delta`` against the changes of its matched random
    draws (``draw_deltas``, in the order they were run): ``(1 + #{draws with change <= set_delta}) /
    (1 + R)``. A draw that ties with the set counts against the claim; with ``R = 0`` draws ``p = 1``
    (nothing was tested); a NaN set change gives NaN, NaN draws are dropped.

    Sequential form (Besag & Clifford 1991), when ``h`` is given: if the ``h``-th draw with change <=
    ``set_delta`` came at draw ``L`` and ``L < max_draws`` (drawing stopped there), ``p = h / L``;
    otherwise (``max_draws`` draws were run, or fewer than ``h`` reached the set) the plain formula over
    every draw run.

    >>> monte_carlo_p(-0.8, [-0.8, -0.2, 0.0, -0.1, 0.0, 0.0, -0.3, 0.0])  # one tie of 8: (1 + 1) / 9
    0.2222222222222222
    >>> monte_carlo_p(-0.5, [0.0] * 19), monte_carlo_p(-0.5, []), monte_carlo_p(0.0, [0.0, 0.0, 0.0])
    (0.05, 1.0, 1.0)
    >>> monte_carlo_p(-0.1, [-0.2, 0.0, -0.3, -0.4, 0.1], h=3, max_draws=99)  # 3rd hit at draw 4: 3 / 4
    0.75
    >>> monte_carlo_p(-0.1, [-0.2, 0.0, 0.1], h=3, max_draws=3)  # all 3 run, 1 hit: (1 + 1) / 4
    0.5
    """
    if h is not None and int(h) < 1:
        raise ValueError(f"monte_carlo_p: h must be >= 1, got {h}")
    if not np.isfinite(set_delta):
        return math.nan
    d = np.asarray(list(draw_deltas), dtype=float)
    d = d[np.isfinite(d)]
    hits = d <= set_delta + TIE_TOLERANCE
    if h is not None:
        cum = np.cumsum(hits)
        reached = np.flatnonzero(cum >= int(h))
        if reached.size:
            stop = int(reached[0]) + 1  # draws run when the h-th hit came
            if max_draws is None or stop < int(max_draws):
                return int(h) / stop
    return (1 + int(hits.sum())) / (1 + d.size)


def smallest_p(draws: int) -> float:
    """The smallest p-value :func:`monte_carlo_p` can give with ``draws`` random draws: ``1 / (1 + R)``.

    >>> smallest_p(8), smallest_p(19), smallest_p(0)
    (0.1111111111111111, 0.05, 1.0)
    """
    return 1.0 / (1 + max(int(draws), 0))


# ----------------------------------------------------------------------------------------------
# Multiple comparisons
# ----------------------------------------------------------------------------------------------
def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate): the ``i``-th smallest of ``m``
    p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``. NaN entries stay NaN and do not count
    in ``m``.

    >>> holm([0.01, 0.04, 0.03, 0.005]).round(6).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    x = np.asarray(p, dtype=float)
    out = np.full(x.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(x))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(x[ok], kind="stable")]
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * x[order]))
    out[order] = adj
    return out


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg step-up adjusted p-values (false discovery rate): the ``i``-th smallest of
    ``m`` p-values becomes ``min_{j >= i} min(1, m p_(j) / j)``. NaN entries stay NaN and do not count.

    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).round(6).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    x = np.asarray(p, dtype=float)
    out = np.full(x.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(x))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(x[ok], kind="stable")]
    raw = np.minimum(1.0, m * x[order] / np.arange(1, m + 1))
    out[order] = np.minimum.accumulate(raw[::-1])[::-1]
    return out


def adjust_p(p: Sequence[float], correction: Correction = "holm") -> np.ndarray:
    """The ``correction`` (:data:`CORRECTIONS`) of the p-values of every test of a run."""
    if correction == "holm":
        return holm(p)
    if correction == "bh":
        return benjamini_hochberg(p)
    raise ValueError(f"unknown multiple-comparison correction {correction!r}; expected one of {CORRECTIONS}")


def attainable(draws: int, tests: int, alpha: float = ALPHA, correction: Correction = "holm") -> bool:
    """Can any of ``tests`` tests with ``draws`` random draws each pass the corrected level at all? Under
    Holm the smallest p ``1 / (1 + R)`` is multiplied by ``tests``; under Benjamini–Hochberg the most
    lenient case (every test at the smallest p) leaves it unchanged. The result must be below ``alpha``.

    >>> attainable(8, 1), attainable(19, 1), attainable(20, 1), attainable(99, 4), attainable(99, 5)
    (False, False, True, True, False)
    >>> attainable(99, 12, correction="bh"), attainable(19, 12, correction="bh")
    (True, False)
    """
    if tests <= 0 or draws <= 0:
        return False
    factor = tests if correction == "holm" else 1
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown multiple-comparison correction {correction!r}; expected one of {CORRECTIONS}")
    return min(1.0, factor * smallest_p(draws)) < alpha


# ----------------------------------------------------------------------------------------------
# Intervals of test-set numbers
# ----------------------------------------------------------------------------------------------
#: Two-sided standard normal quantile of :data:`LEVEL` (95 %).
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (95 % by default); ``(nan, nan)`` for
    ``n = 0``.

    >>> tuple(round(v, 4) for v in wilson_interval(8, 10))
    (0.4902, 0.9433)
    >>> tuple(round(v, 4) for v in wilson_interval(0, 5))
    (0.0, 0.4345)
    """
    k, n = int(successes), int(n)
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {k} of {n}")
    ph = k / n
    den = 1 + z * z / n
    centre = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)


def paired_bootstrap_interval(
    lost: int, gained: int, n: int, *, reps: int = BOOTSTRAP_REPS, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Central ``level`` interval of a change of recall over ``reps`` bootstrap resamples of a class's
    ``n`` test clips, paired between baseline and ablation: each clip is one of *lost* (right before,
    wrong after), *gained* (wrong before, right after) or unchanged, and the change is ``(gained − lost)
    / n``. Resampling the clips is a multinomial draw of these three counts, so the counts give the
    paired bootstrap exactly (no per-clip list needed). ``(nan, nan)`` for ``n = 0``.

    >>> paired_bootstrap_interval(0, 0, 12)
    (0.0, 0.0)
    >>> lo, hi = paired_bootstrap_interval(10, 0, 12); -1.0 <= lo < -10 / 12 < hi <= -0.5
    True
    """
    lost, gained, n = int(lost), int(gained), int(n)
    if n <= 0:
        return math.nan, math.nan
    if lost < 0 or gained < 0 or lost + gained > n:
        raise ValueError(f"paired_bootstrap_interval: lost={lost}, gained={gained} do not fit {n} clips")
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, [lost / n, gained / n, (n - lost - gained) / n], size=int(reps))
    change = (cells[:, 1] - cells[:, 0]) / n
    a = (1 - level) / 2
    return float(np.round(np.quantile(change, a), 12)), float(np.round(np.quantile(change, 1 - a), 12))


# ----------------------------------------------------------------------------------------------
# The word "specific"
# ----------------------------------------------------------------------------------------------
def failed_criteria(
    p_adjusted: float, on_target_delta: float, probe_accuracy_lo: float, chance: float, alpha: float = ALPHA
) -> list[str]:
    """Which of the three criteria of *specific* a set fails (empty list: it is specific): the
    adjusted p-value is below ``alpha``, its on-target change is negative, and the probe is above chance
    (the lower end of its accuracy interval above the chance rate).

    >>> failed_criteria(0.01, -0.5, 0.6, 0.2)
    []
    >>> failed_criteria(0.05, 0.0, 0.15, 0.2)
    ['adjusted p >= alpha', 'on-target change not negative', 'probe not above chance']
    """
    out = []
    if not (np.isfinite(p_adjusted) and p_adjusted < alpha):
        out.append("adjusted p >= alpha")
    if not (np.isfinite(on_target_delta) and on_target_delta < 0):
        out.append("on-target change not negative")
    if not (np.isfinite(probe_accuracy_lo) and np.isfinite(chance) and probe_accuracy_lo > chance):
        out.append("probe not above chance")
    return out


def is_specific(
    p_adjusted: float, on_target_delta: float, probe_accuracy_lo: float, chance: float, alpha: float = ALPHA
) -> bool:
    """A set is *specific* only when it fails none of :func:`failed_criteria`.

    >>> is_specific(0.01, -0.5, 0.6, 0.2), is_specific(0.049, -0.5, 0.19, 0.2)
    (True, False)
    """
    return not failed_criteria(p_adjusted, on_target_delta, probe_accuracy_lo, chance, alpha)
