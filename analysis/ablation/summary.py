"""Matched-draw statistics: each set's change against its matched random draws (mean, interval, exact
Monte-Carlo p) and the paired bootstrap interval of a single condition's change, as the rows of
``ablation_groups.csv``."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis import draws as D
from analysis.ablation.condition import Condition
from analysis.significance import BOOTSTRAP_REPS, monte_carlo_p, paired_bootstrap_interval

SUMMARY_COLUMNS = [
    "group",
    "kind",
    "target",
    "k",
    "class",
    "on_target",
    "n_draws",
    "n",
    "accuracy_mean",
    "delta_mean",
    "delta_std",
    "delta_lo",
    "delta_hi",
    "random_group",
    "random_delta_mean",
    "random_delta_lo",
    "random_delta_hi",
    "p_random",
    "p_value",
    "change_lo",
    "change_hi",
]


def matched_draws(table: pd.DataFrame, parent: str, cls: str, conditions: Optional[Sequence] = None) -> np.ndarray:
    """The changes of class ``cls`` under the matched random draws of set ``parent`` (rows of
    ``ablation.csv``), in the order they were drawn: the one place that maps a set to its draws. With
    ``conditions`` (``ablation_conditions.json``'s descriptions or :class:`Condition` objects) the draws are
    :func:`analysis.draws.matched_draws` (shared by sets of one profile, cut where drawing stopped); without
    them, the draws named ``random:<parent>:`` (runs before draws were shared).

    >>> t = pd.DataFrame({"condition": ["class:a", "random:class:a:1", "random:class:a:0", "random:class:ab:0"],
    ...                   "kind": ["class", "random", "random", "random"], "class": "a", "draw": ["", 1, 0, 0],
    ...                   "delta": [-0.5, -0.1, 0.0, -0.9]})
    >>> matched_draws(t, "class:a", "a").tolist()
    [0.0, -0.1]
    """
    if conditions is not None and any(D._get(c, "name") == parent for c in conditions):
        names = [D._get(c, "name") for c in D.matched_draws(conditions, parent)]  # shared, early-stopped draws
        own = table[(table["class"] == cls) & table["condition"].isin(names)].set_index("condition")["delta"]
        return np.array([float(own[n]) for n in names if n in own.index], dtype=float)
    rows = table[
        (table["kind"] == "random")
        & (table["class"] == cls)
        & table["condition"].astype(str).str.startswith(f"random:{parent}:")
    ]
    order = pd.to_numeric(rows["draw"], errors="coerce").to_numpy()
    return rows["delta"].to_numpy(dtype=float)[np.argsort(order, kind="stable")]


def set_change_interval(rows: pd.DataFrame, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of a single condition's change of one class (its one ``ablation.csv``
    row, with ``lost`` / ``gained`` counts); NaN when the counts were not recorded."""
    if len(rows) != 1 or "lost" not in rows or "gained" not in rows:
        return math.nan, math.nan
    r = rows.iloc[0]
    lost, gained = pd.to_numeric(pd.Series([r["lost"], r["gained"]]), errors="coerce")
    if not (np.isfinite(lost) and np.isfinite(gained)):
        return math.nan, math.nan
    return paired_bootstrap_interval(int(lost), int(gained), int(r["n"]), reps=BOOTSTRAP_REPS, seed=seed)


def summarise(
    table: pd.DataFrame,
    conditions: Sequence[Condition],
    level: float = 0.95,
    *,
    h: Optional[int] = None,
    max_draws: Optional[int | dict[str, int]] = None,
) -> pd.DataFrame:
    """Rows of ``ablation_groups.csv``: one per condition group × class.

    For a group of random draws: mean, std and the central ``level`` interval (empirical quantiles)
    of the delta over draws. For a single condition: its delta (std 0, interval = the value) and, when
    it has matched random draws, their mean/interval and ``p_random`` = share of draws whose delta is
    ≤ the condition's delta (small = the targeted set hurts more than random sets of the same size
    and layers) and ``p_value``, the exact Monte-Carlo p of :func:`analysis.significance.monte_carlo_p`
    over :func:`matched_draws` (ties count against the set; ``h`` / ``max_draws``: the sequential form
    when drawing stopped early); ``change_lo`` / ``change_hi``: the paired bootstrap interval over test
    clips of a single condition's change (:func:`set_change_interval`). ``on_target``: the evaluated class
    is one of the condition's targets."""
    by_name = {c.name: c for c in conditions}
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    rows = []
    t = table.copy()
    t["group"] = [by_name[c].group for c in t["condition"]]
    for (group, cls), g in t.groupby(["group", "class"], sort=False):
        d = g["delta"].to_numpy(dtype=float)
        first = by_name[g["condition"].iloc[0]]
        lo, hi = (np.nanquantile(d, lo_q), np.nanquantile(d, hi_q)) if len(d) > 1 else (d[0], d[0])
        row = dict(
            group=group,
            kind=first.kind,
            target="+".join(first.target),
            k="" if first.k is None else int(first.k),
            **{"class": cls},
            on_target=cls in first.target,
            n_draws=len(d),
            n=int(g["n"].iloc[0]),
            accuracy_mean=float(np.nanmean(g["accuracy"])),
            delta_mean=float(np.nanmean(d)),
            delta_std=float(np.nanstd(d, ddof=1)) if len(d) > 1 else 0.0,
            delta_lo=float(lo),
            delta_hi=float(hi),
            random_group="",
            random_delta_mean=math.nan,
            random_delta_lo=math.nan,
            random_delta_hi=math.nan,
            p_random=math.nan,
            p_value=math.nan,
            change_lo=math.nan,
            change_hi=math.nan,
        )
        if len(d) == 1:
            row["change_lo"], row["change_hi"] = set_change_interval(g)
        rows.append(row)
    delta = {(c, k): float(v) for c, k, v in zip(t["condition"], t["class"], t["delta"])}
    for row in rows:
        mine = [] if row["kind"] == "random" else D.matched_draws(conditions, row["group"])
        mine = [c for c in mine if (c.name, row["class"]) in delta]
        if mine:
            d = np.array([delta[(c.name, row["class"])] for c in mine])
            lo, hi = (np.nanquantile(d, lo_q), np.nanquantile(d, hi_q)) if len(d) > 1 else (d[0], d[0])
            cap = max_draws.get(row["group"]) if isinstance(max_draws, dict) else max_draws
            row.update(
                random_group=mine[0].group,
                random_delta_mean=float(np.nanmean(d)),
                random_delta_lo=float(lo),
                random_delta_hi=float(hi),
                p_random=float(np.mean(d <= row["delta_mean"] + 1e-12)),
                p_value=monte_carlo_p(row["delta_mean"], d, h=h, max_draws=cap),
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
