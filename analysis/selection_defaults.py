"""The selection defaults (the study's) and the one rule for valid selection rates: every caller takes
``top_rate``, ``filter_rate``, ``activation_bar_ratio`` and ``min_activity`` from here (through
:mod:`analysis.aape`, which hands them on), and the per-task ``top_rate`` only from
:func:`resolve_top_rate`."""

from __future__ import annotations

from typing import Mapping

#: Per-task ``top_rate`` of the study: lowest 2% entropy for ESC-50 and GISE-51, 1% otherwise.
TOP_RATE_BY_TASK: dict[str, float] = {"esc50": 0.02, "gise51": 0.02}
DEFAULT_TOP_RATE = 0.01
#: Quantile of all probabilities a neuron must exceed for some class to be a candidate.
FILTER_RATE = 0.95
#: Quantile of all probabilities a selected neuron must exceed for a class to be assigned to it.
ACTIVATION_BAR_RATIO = 0.95
#: Minimum activity: a neuron whose activation probability is below this in *every* class (active on fewer
#: than 1 % of the counted positions — clips at ``level: clip`` — of each class) is never selected nor
#: ranked lowest-entropy (``default`` mode; ``lape`` mode uses 0, no filter). Near-dead units have a low
#: entropy for no reason but their silence.
MIN_ACTIVITY = 0.01


def default_top_rate(task: str | None, table: Mapping[str, float] | None = None) -> float:
    """The study's ``top_rate`` for ``task``: 0.02 for esc50 and gise51, else 0.01.

    ``table`` (e.g. a user's YAML ``{task: rate, default: rate}``) maps task → rate and may hold a
    ``default`` key; it overrides the built-in table.

    >>> default_top_rate("esc50"), default_top_rate("gise51"), default_top_rate("cremad")
    (0.02, 0.02, 0.01)
    >>> default_top_rate("cremad", {"cremad": 0.05})
    0.05
    >>> default_top_rate(None)
    0.01
    """
    merged: dict[str, float] = {**TOP_RATE_BY_TASK, "default": DEFAULT_TOP_RATE}
    if table:
        merged.update({str(k): float(v) for k, v in table.items()})
    if task is not None and task in merged:
        return float(merged[task])
    return float(merged["default"])


def check_rates(
    top_rate: float | None = None, filter_rate: float | None = None, activation_bar_ratio: float | None = None
) -> None:
    """Raise ``ValueError`` naming the parameter unless ``top_rate`` is in (0, 1] and ``filter_rate`` and
    ``activation_bar_ratio`` are in (0, 1) (None: not checked). The one rule for valid selection rates.

    >>> check_rates(top_rate=0.01, filter_rate=0.95, activation_bar_ratio=0.95)
    >>> check_rates(top_rate=-0.05)
    Traceback (most recent call last):
    ...
    ValueError: top_rate must be in (0, 1] (a share of the neurons), got -0.05
    """
    for name, value, top_closed in (
        ("top_rate", top_rate, True),
        ("filter_rate", filter_rate, False),
        ("activation_bar_ratio", activation_bar_ratio, False),
    ):
        if value is None:
            continue
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (0 < value <= 1 if top_closed else 0 < value < 1)
        )
        if not ok:
            span = "(0, 1] (a share of the neurons)" if top_closed else "(0, 1) (a quantile)"
            raise ValueError(f"{name} must be in {span}, got {value!r}")


def resolve_top_rate(
    task: str | None, top_rate: float | None = None, table: Mapping[str, float] | None = None
) -> float:
    """The ``top_rate`` to use: an explicit ``top_rate`` wins, else :func:`default_top_rate` of ``task``
    (with ``table`` overriding the built-in per-task values). The one rule every caller uses.

    >>> resolve_top_rate("esc50"), resolve_top_rate("esc50", 0.05), resolve_top_rate("x", None, {"x": 0.2})
    (0.02, 0.05, 0.2)
    """
    if top_rate is not None:
        return float(top_rate)
    return default_top_rate(task, table)
