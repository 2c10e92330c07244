"""Steering by gain: a class's unit set scaled by ``g`` (0 = zeroed, 1 = untouched, > 1 = amplified) in
the one-pass ablation test, against size- and layer-matched random sets at every gain.

Vocabulary (see :mod:`analysis.ablation` for conditions and masks): a *steering condition* is a base
condition (a class set, or one of its random draws) together with a gain. ``g = 1`` leaves every channel
as it is, so its row is the unablated model itself — the baseline pass (never re-run: equal by
construction, bit for bit). Per condition the test pass accumulates, as exactly mergeable counts,

* ``correct`` int64 ``[K, C]`` — clips of true class c predicted as c;
* ``n``       int64 ``[C]``    — clips of true class c;
* ``prob``    float64 ``[K, C, C]`` — sum over clips of true class t of the probe's softmax probability of
  class c (``prob[k, t, c]``).

:func:`steering_table` turns them into the rows of ``steering.csv``: per class, metric and gain the
on-target value (the class set's), the unablated ``baseline``, the central interval of the random sets'
values and the exact Monte Carlo p-value :func:`monte_carlo_p`. Metrics: ``probability`` (mean probability
of the class on its own clips), ``recall``, and ``off_target_recall`` (mean recall of the other classes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analysis.ablation import Condition
from analysis.significance import LEVEL, empirical_interval

DEFAULT_GAINS = (0.0, 0.5, 1.0, 2.0, 4.0)
METRICS = ("probability", "recall", "off_target_recall")
#: Columns of ``steering.csv`` (the first eight are the contract).
STEERING_COLUMNS = [
    "task",
    "class",
    "gain",
    "baseline",
    "on_target",
    "random_lo",
    "random_hi",
    "p_value",
    "metric",
    "set_size",
    "random_draws",
    "random_mean",
]


def check_gains(gains: Sequence[float]) -> list[float]:
    """Sorted distinct finite gains (at least one other than 1).

    >>> check_gains([2, 0, 1, 2])
    [0.0, 1.0, 2.0]
    """
    g = sorted({float(x) for x in gains})
    if not g or not all(np.isfinite(g)) or g == [1.0]:
        raise ValueError(f"gains must be finite numbers with at least one other than 1, got {list(gains)}")
    return g


def steering_conditions(base: Sequence[Condition], gains: Sequence[float]) -> list[tuple[Condition, float]]:
    """The (condition, gain) pairs a pass runs: every non-baseline condition of ``base`` at every gain
    other than 1, gain-major within a condition. The baseline is the pass's own logits."""
    return [(c, float(g)) for c in base if c.kind != "baseline" for g in gains if float(g) != 1.0]


def steering_scales(pairs: Sequence[tuple[Condition, float]], site_neurons: Sequence[int]) -> list[Tensor]:
    """Per site, the channel scale of every run condition: float32 ``[1 + K, N_l]`` (row 0, the baseline, is
    all ones); a condition's chosen channels get its gain, every other channel exactly 1.

    >>> c = Condition("class:a", "class", torch.tensor([[True, False]]), ["a"])
    >>> steering_scales([(c, 2.0), (c, 0.0)], [2])[0].tolist()
    [[1.0, 1.0], [2.0, 1.0], [0.0, 1.0]]
    """
    out = []
    for l, n in enumerate(site_neurons):
        sc = torch.ones(1 + len(pairs), int(n))
        for k, (c, g) in enumerate(pairs, start=1):
            sc[k, c.mask[l, :n]] = g
        out.append(sc)
    return out


@torch.no_grad()
def count_probabilities(probs: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Sum of probabilities per true class: float64 ``[K, C, C]`` from probabilities ``[K, B, C]`` and labels
    ``[B]`` (on their device, no host sync).

    >>> count_probabilities(torch.tensor([[[0.75, 0.25], [0.5, 0.5], [0.5, 0.5]]]), torch.tensor([0, 1, 0]), 2).tolist()
    [[[1.25, 0.75], [0.5, 0.5]]]
    """
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float64)  # [B, C]
    return torch.einsum("bt,kbc->ktc", onehot, probs.to(torch.float64))


def monte_carlo_p(value: float, baseline: float, draws: Sequence[float]) -> float:
    """Exact Monte Carlo p-value of ``value``'s change from ``baseline`` against the random draws' changes:
    ``(1 + #{draws at least as far from the baseline}) / (1 + R)`` (two-sided; NaN draws left out).

    >>> monte_carlo_p(0.9, 0.5, [0.5, 0.6, 0.4, 0.95])
    0.4
    >>> monte_carlo_p(0.5, 0.5, [])
    1.0
    """
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    dev = abs(value - baseline)
    return float((1 + int((np.abs(d - baseline) >= dev - 1e-12).sum())) / (1 + len(d)))


def _metric(name: str, k: int, c: int, correct: np.ndarray, n: np.ndarray, prob: np.ndarray) -> float:
    """Metric ``name`` of class ``c`` under run condition ``k`` (row 0 = baseline)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "probability":
            return float(prob[k, c, c] / n[c]) if n[c] else float("nan")
        if name == "recall":
            return float(correct[k, c] / n[c]) if n[c] else float("nan")
        others = [o for o in range(len(n)) if o != c and n[o]]
        return float(np.mean([correct[k, o] / n[o] for o in others])) if others else float("nan")


def steering_table(
    task: str,
    classes: Sequence[str],
    pairs: Sequence[tuple[Condition, float]],
    gains: Sequence[float],
    correct: Tensor,
    n: Tensor,
    prob: Tensor,
    level: float = LEVEL,
) -> pd.DataFrame:
    """The rows of ``steering.csv`` (:data:`STEERING_COLUMNS`): per class set (``class:<c>`` conditions),
    metric and gain of ``gains`` (1 included: the baseline). ``correct`` ``[1 + K, C]``, ``prob``
    ``[1 + K, C, C]`` with row 0 the baseline and row ``1 + i`` the pair ``pairs[i]``."""
    correct, n, prob = correct.double().numpy(), n.double().numpy(), prob.double().numpy()
    row = {(c.name, g): i + 1 for i, (c, g) in enumerate(pairs)}
    sets = {c.name: c for c, _ in pairs if c.kind == "class"}
    draws = {}
    for c, _ in pairs:  # a set's draws: its own (parent), or those shared by its size profile
        if c.kind != "random":
            continue
        for name, cs in sets.items():
            prof = getattr(cs, "profile", None)
            if c.parent == name or (prof is not None and getattr(c, "profile", None) == prof):
                draws.setdefault(name, {})[c.name] = c
    out = []
    for name, cset in sets.items():
        ci = list(classes).index(cset.target[0])
        rnd = list(draws.get(name, {}).values())
        for metric in METRICS:
            base = _metric(metric, 0, ci, correct, n, prob)
            for g in gains:
                g = float(g)
                k = 0 if g == 1.0 else row[(name, g)]
                vals = [_metric(metric, 0 if g == 1.0 else row[(r.name, g)], ci, correct, n, prob) for r in rnd]
                value = _metric(metric, k, ci, correct, n, prob)
                lo, hi = empirical_interval(vals, level)
                out.append(
                    {
                        "task": task,
                        "class": cset.target[0],
                        "gain": g,
                        "baseline": base,
                        "on_target": value,
                        "random_lo": lo,
                        "random_hi": hi,
                        "p_value": monte_carlo_p(value, base, vals) if rnd else float("nan"),
                        "metric": metric,
                        "set_size": int(cset.mask.sum()),
                        "random_draws": len(rnd),
                        "random_mean": float(np.nanmean(vals)) if vals else float("nan"),
                    }
                )
    return pd.DataFrame(out, columns=STEERING_COLUMNS)
