"""The result tables of an ablation: the rows of ``ablation.csv`` (:func:`results_table`) and of
``ablation_confusion.csv`` (:func:`confusion_table`) from the scoring counts, and the confusion counts of
one condition back from its table (:func:`confusion_matrix`)."""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch
from torch import Tensor

from analysis.ablation.condition import Condition

ALL_CLASSES = "ALL"  # value of the ``class`` column for the overall accuracy row

ABLATION_COLUMNS = [
    "condition",
    "kind",
    "target",
    "k",
    "draw",
    "class",
    "n",
    "correct",
    "accuracy",
    "delta",
    "lost",
    "gained",
]
CONFUSION_COLUMNS = ["condition", "kind", "target", "k", "draw", "true", "predicted", "count"]


def confusion_table(conditions: Sequence[Condition], classes: Sequence[str], confusion: Tensor) -> pd.DataFrame:
    """Rows of ``ablation_confusion.csv``: one per condition × true class × predicted class with a
    non-zero count (absent rows are zeros, so the table gives the ``[K, C, C]`` counts back exactly)."""
    if confusion.shape != (len(conditions), len(classes), len(classes)):
        raise ValueError(
            f"confusion has shape {tuple(confusion.shape)}, expected "
            f"({len(conditions)}, {len(classes)}, {len(classes)})"
        )
    k_idx, t_idx, p_idx = confusion.nonzero(as_tuple=True)
    counts = confusion[k_idx, t_idx, p_idx].tolist()
    rows = []
    for i, t, p, c in zip(k_idx.tolist(), t_idx.tolist(), p_idx.tolist(), counts):
        cond = conditions[i]
        rows.append(
            dict(
                condition=cond.name,
                kind=cond.kind,
                target="+".join(cond.target),
                k="" if cond.k is None else int(cond.k),
                draw="" if cond.draw is None else int(cond.draw),
                true=classes[t],
                predicted=classes[p],
                count=int(c),
            )
        )
    return pd.DataFrame(rows, columns=CONFUSION_COLUMNS)


def confusion_matrix(table: pd.DataFrame, condition: str, classes: Sequence[str]) -> Tensor:
    """The int64 ``[C, C]`` counts (true × predicted) of one condition from an ``ablation_confusion.csv``
    table; an unknown condition is a ``ValueError`` listing the known ones."""
    rows = table[table["condition"] == condition]
    if rows.empty:
        known = list(dict.fromkeys(table["condition"]))
        raise ValueError(
            f"no condition {condition!r} in the confusion table; known: {known[:20]}"
            + (" ..." if len(known) > 20 else "")
        )
    index = {c: i for i, c in enumerate(classes)}
    m = torch.zeros(len(classes), len(classes), dtype=torch.long)
    for t, p, c in zip(rows["true"].astype(str), rows["predicted"].astype(str), rows["count"]):
        m[index[t], index[p]] += int(c)
    return m


def _flip(fl: Optional[Tensor], side: int, i: int, j: Optional[int] = None) -> int | str:
    """One ``lost`` / ``gained`` cell: ``""`` where the flips were not counted (no ``flips``, or ``-1``: a
    condition of a later draw round, which runs without the baseline beside it); ``j=None``: all classes."""
    if fl is None:
        return ""
    v = fl[side, i] if j is None else fl[side, i, j]
    return "" if bool((v < 0).any()) else int(v.sum())


def flips_in_order(first: Sequence[Condition], flips: Tensor, conditions: Sequence[Condition]) -> Tensor:
    """The lost / gained counts ``[2, K_first, C]`` of the first draw round (the baseline beside them) laid
    out in the order of ``conditions`` ``[2, K, C]``; ``-1`` for conditions of later rounds (not counted).

    >>> a, b, r = (Condition(n, "class", torch.zeros(1, 1, dtype=torch.bool)) for n in ("a", "b", "r"))
    >>> flips_in_order([a, b], torch.tensor([[[1], [2]], [[0], [3]]]), [b, r, a])[:, :, 0].tolist()
    [[2, -1, 1], [3, -1, 0]]
    """
    index = {c.name: i for i, c in enumerate(first)}
    out = torch.full((2, len(conditions), flips.shape[-1]), -1, dtype=torch.long)
    for k, c in enumerate(conditions):
        if c.name in index:
            out[:, k] = flips[:, index[c.name]].long()
    return out


def results_table(
    conditions: Sequence[Condition], classes: Sequence[str], correct: Tensor, n: Tensor, flips: Optional[Tensor] = None
) -> pd.DataFrame:
    """Rows of ``ablation.csv``: one per condition × class plus one ``class = ALL`` row (overall
    accuracy). ``accuracy = correct / n`` (the class's recall), ``delta`` = accuracy − baseline accuracy
    of the same class, ``lost`` / ``gained`` the clips whose correctness changed against the baseline
    (:func:`count_flips` ``[2, K, C]``; empty without ``flips`` and where a row of it is ``-1``). The first condition must be the baseline."""
    if not conditions or conditions[0].kind != "baseline":
        raise ValueError("the first condition must be the baseline")
    correct = correct.long()
    n = n.long()
    acc = correct.double() / n.clamp(min=1).double()[None, :]
    acc[:, n == 0] = float("nan")
    tot = correct.sum(1).double() / max(int(n.sum()), 1)
    fl = None if flips is None else flips.long()
    rows = []
    for i, c in enumerate(conditions):
        common = dict(
            condition=c.name,
            kind=c.kind,
            target="+".join(c.target),
            k="" if c.k is None else int(c.k),
            draw="" if c.draw is None else int(c.draw),
        )
        for j, cls in enumerate(classes):
            rows.append(
                dict(
                    common,
                    **{"class": cls},
                    n=int(n[j]),
                    correct=int(correct[i, j]),
                    accuracy=float(acc[i, j]),
                    delta=float(acc[i, j] - acc[0, j]),
                    lost=_flip(fl, 0, i, j),
                    gained=_flip(fl, 1, i, j),
                )
            )
        rows.append(
            dict(
                common,
                **{"class": ALL_CLASSES},
                n=int(n.sum()),
                correct=int(correct[i].sum()),
                accuracy=float(tot[i]),
                delta=float(tot[i] - tot[0]),
                lost=_flip(fl, 0, i),
                gained=_flip(fl, 1, i),
            )
        )
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)
