"""AAPE: Audio Activation Probability Entropy — selection of class-specific neurons.

Plain tensor functions, no I/O. Shapes: ``L`` neuron sites (layers), ``N`` neurons per site (padded to
the largest site; neurons that do not exist are NaN in every class), ``C`` classes.

The reference semantics is LAPE's ``identify.py`` (Tang et al., ACL 2024), which the study follows::

    p      = count / n_tokens                                      # [L, N, C]
    q      = p / p.sum(-1, keepdim)   (NaN -> 0)
    H      = -(q * log q).sum(-1)     (natural log, 0 log 0 = 0)
    bar_f  = kthvalue(p.flatten(), round(p.numel() * filter_rate))
    H[(p > bar_f).sum(-1) == 0] = +inf
    sel    = topk(H.flatten(), round(L * N * top_rate), largest=False)
    bar_a  = kthvalue(p.flatten(), round(p.numel() * activation_bar_ratio))
    (l, n) in sel belongs to every class c with p[l, n, c] > bar_a
    output = per class (bincount over assigned classes, so trailing classes without neurons are
             dropped), per layer, ascending neuron ids.

``mode="lape"`` reproduces this exactly. ``mode="default"`` fixes its defects behind named options
(:class:`SelectionOptions`), each logged when used:

* ``drop_empty_classes=False`` — every class appears in the output, with zero neurons if need be (LAPE's
  ``bincount`` silently drops classes after the last class that received a neuron, shifting nothing but
  truncating the list, so a consumer indexing by class gets an IndexError or misses classes).
* ``tie_break="index"`` — neurons with equal entropy are ranked by (layer, neuron) (a stable sort);
  LAPE's ``topk`` picks among ties in an implementation-defined order.
* ``exclude_filtered=True`` — neurons that never exceed the filter bar (entropy +inf) are never selected;
  LAPE's ``topk`` takes them when fewer than ``k`` neurons pass the filter.
* ``warn_saturation=True`` — a warning when a bar equals the largest probability (nothing can exceed it).
* ``min_activity`` (:data:`MIN_ACTIVITY`) — neurons below it in every class (:func:`inactive_neurons`)
  are never selected; their number is ``Identification.n_inactive``.

NaN (absent) neurons are handled identically in both modes, because this is a data convention and not a
LAPE defect: they are excluded from the quantiles and from the ``L * N`` count, and never selected. On data
without NaN, ``lape`` mode is bit-for-bit LAPE.

This module is the selection (:func:`identify`); it hands on the pieces it is built from, so callers
import them from here: the defaults and rate rules (:mod:`analysis.selection_defaults`), the activation
probabilities and absent / inactive neurons (:mod:`analysis.activation_probability`), and the entropy
over classes with the threshold-free lowest-entropy ranking (:mod:`analysis.class_entropy`), and the
LAPE mask format of its result (:mod:`analysis.mask_format`).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from analysis.activation_probability import absent_neurons, activation_probability, inactive_neurons
from analysis.class_entropy import entropy, lowest_entropy_by_class, normalise, normalised_entropy
from analysis.mask_format import neurons_to_masks, per_class_lists
from analysis.selection_defaults import (
    ACTIVATION_BAR_RATIO,
    DEFAULT_TOP_RATE,
    FILTER_RATE,
    MIN_ACTIVITY,
    TOP_RATE_BY_TASK,
    check_rates,
    default_top_rate,
    resolve_top_rate,
)

log = logging.getLogger(__name__)


__all__ = [
    "ACTIVATION_BAR_RATIO",
    "DEFAULT_TOP_RATE",
    "FILTER_RATE",
    "MIN_ACTIVITY",
    "TOP_RATE_BY_TASK",
    "Identification",
    "Mode",
    "SaturationWarning",
    "SelectionOptions",
    "absent_neurons",
    "activation_probability",
    "check_rates",
    "default_top_rate",
    "entropy",
    "identify",
    "inactive_neurons",
    "lowest_entropy_by_class",
    "neurons_to_masks",
    "normalise",
    "normalised_entropy",
    "resolve_top_rate",
    "select_neurons",
]

Mode = Literal["default", "lape"]


class SaturationWarning(UserWarning):
    """A selection bar equals the largest activation probability: no neuron can exceed it."""


def _kth_bar(values: Tensor, rate: float, name: str) -> float:
    """LAPE's quantile: the ``round(len * rate)``-th smallest value (1-based) of the 1-D ``values``."""
    k = round(len(values) * rate)
    if not 1 <= k <= len(values):
        raise ValueError(f"{name}={rate} gives k={k} for {len(values)} present values; need 1 <= k <= {len(values)}")
    return values.kthvalue(k).values.item()


@dataclass(frozen=True)
class SelectionOptions:
    """The behaviours that distinguish ``lape`` from ``default`` mode (see module docstring)."""

    drop_empty_classes: bool
    tie_break: Literal["topk", "index"]
    exclude_filtered: bool
    warn_saturation: bool

    @staticmethod
    def for_mode(mode: Mode) -> "SelectionOptions":
        if mode == "lape":
            return SelectionOptions(
                drop_empty_classes=True, tie_break="topk", exclude_filtered=False, warn_saturation=False
            )
        if mode == "default":
            return SelectionOptions(
                drop_empty_classes=False, tie_break="index", exclude_filtered=True, warn_saturation=True
            )
        raise ValueError(f"mode must be 'default' or 'lape', got {mode!r}")


@dataclass
class Identification:
    """Everything :func:`identify` computed.

    Attributes:
        p: ``[L, N, C]`` activation probabilities (input, NaN = absent).
        entropy: ``[L, N]`` entropy over classes (NaN for absent neurons). Selection ranks by this value
            with +inf for neurons failing the filter; the stored value is the raw entropy.
        normalised_entropy: ``[L, N]`` ``entropy / ln C`` (comparable across class counts).
        passes_filter: ``[L, N]`` bool, some class has ``p > filter_bar``.
        selected: ``[K, 2]`` long, (layer, neuron) of the selected neurons in rank order (lowest entropy
            first).
        assignments: ``[K, C]`` bool, ``p > activation_bar`` for each selected neuron.
        neurons: class → layer → LongTensor of neuron ids (ascending), the LAPE mask format. In ``lape``
            mode trailing classes without neurons are dropped, exactly as LAPE.
        filter_bar, activation_bar: the two quantile values used.
        n_requested: ``round(n_present * top_rate)``.
        n_inactive: present neurons below ``min_activity`` in every class (never selected).
        warnings: human-readable warnings (also emitted through :mod:`warnings`).
    """

    p: Tensor
    entropy: Tensor
    normalised_entropy: Tensor
    passes_filter: Tensor
    selected: Tensor
    assignments: Tensor
    neurons: list[list[Tensor]]
    filter_bar: float
    activation_bar: float
    n_requested: int
    mode: str
    top_rate: float
    filter_rate: float
    activation_bar_ratio: float
    options: SelectionOptions
    warnings: list[str] = field(default_factory=list)
    min_activity: float = 0.0
    n_inactive: int = 0

    @property
    def n_selected(self) -> int:
        return int(self.selected.shape[0])

    def class_masks(self) -> Tensor:
        """``[C, L, N]`` bool: neuron (l, n) belongs to class c (all classes, even in ``lape`` mode)."""
        L, N, C = self.p.shape
        m = torch.zeros(C, L, N, dtype=torch.bool)
        c_idx, k_idx = torch.where(self.assignments.T)
        m[c_idx, self.selected[k_idx, 0], self.selected[k_idx, 1]] = True
        return m


class _Warnings(list):
    """Warnings of one selection: kept (``neurons.json``) and emitted once through :mod:`warnings`."""

    def warn(self, msg: str, category: type[Warning] = UserWarning) -> None:
        self.append(msg)
        warnings.warn(msg, category, stacklevel=4)


@dataclass
class _Probabilities:
    """Validated input of a selection: ``p [L, N, C]`` float32, NaN replaced by 0 in ``p0``, ``absent
    [L, N]``, the present (finite) probabilities ``finite`` (1-D) and their range."""

    p: Tensor
    p0: Tensor
    has_nan: bool
    absent: Tensor
    finite: Tensor
    pmax: float

    @property
    def n_present(self) -> int:
        L, N, _ = self.p.shape
        return L * N - int(self.absent.sum())


def _validate(over_zero: Tensor, warn: _Warnings) -> _Probabilities:
    """Check shape and range; find absent neurons; warn about NaN entries of present neurons."""
    if over_zero.dim() != 3:
        raise ValueError(f"over_zero must be [L, N, C], got shape {tuple(over_zero.shape)}")
    p = over_zero.float()
    L, N, _ = p.shape
    nan = torch.isnan(p)
    has_nan = bool(nan.any())
    absent = absent_neurons(p) if has_nan else torch.zeros(L, N, dtype=torch.bool)
    if has_nan and bool((nan & ~absent[..., None]).any()):
        warn.warn(
            "some present neurons have NaN probabilities for some classes (a class without tokens?); "
            "those entries are treated as 0"
        )
    finite = p[~nan] if has_nan else p.flatten()
    pmin, pmax = (x.item() for x in torch.aminmax(finite)) if finite.numel() else (0.0, 0.0)
    if pmin < 0 or pmax > 1:
        raise ValueError(f"activation probabilities must lie in [0, 1], got range [{pmin}, {pmax}]")
    if L * N - int(absent.sum()) == 0:
        raise ValueError("over_zero holds no present neuron (all NaN)")
    p0 = torch.nan_to_num(p, nan=0.0) if has_nan else p
    return _Probabilities(p=p, p0=p0, has_nan=has_nan, absent=absent, finite=finite, pmax=pmax)


def _filter(probs: _Probabilities, ent: Tensor, filter_rate: float) -> tuple[float, Tensor]:
    """The filter bar and the ranking entropy: ``ent`` with +inf for neurons never above the bar and for
    absent neurons. Returns ``(filter_bar, top_position [L, N])`` (classes above the bar per neuron)."""
    filter_bar = _kth_bar(probs.finite, filter_rate, "filter_rate")
    top_position = (probs.p0 > filter_bar).sum(dim=-1)
    ent[top_position == 0] = torch.inf
    ent[probs.absent] = torch.inf  # never selected (also removed from the candidates in _select)
    return filter_bar, top_position


def _select(
    probs: _Probabilities,
    ent: Tensor,
    k: int,
    opts: SelectionOptions,
    filter_bar: float,
    top_rate: float,
    warn: _Warnings,
) -> Tensor:
    """The ``k`` neurons of lowest ranking entropy as ``[K, 2]`` (layer, neuron), in rank order."""
    N = ent.shape[1]
    flat = ent.flatten()
    if opts.tie_break == "topk":
        if probs.has_nan:
            # absent neurons must never be taken by topk: rank them after every present neuron
            present_idx = torch.where(~probs.absent.flatten())[0]
            _, sub = flat[present_idx].topk(k, largest=False)
            index = present_idx[sub]
        else:
            _, index = flat.topk(k, largest=False)
    else:
        index = torch.sort(flat, stable=True).indices[:k]
    if opts.exclude_filtered:
        keep = torch.isfinite(flat[index])
        n_fin = int(keep.sum())
        if n_fin < k:
            warn.warn(
                f"only {n_fin} neurons pass the filter bar ({filter_bar:.6g}); {k} were requested by "
                f"top_rate={top_rate}: selecting {n_fin}"
            )
        index = index[keep]
    elif bool(probs.absent.flatten()[index].any()):  # pragma: no cover - guarded above
        raise AssertionError("absent neuron selected")
    return torch.stack((torch.div(index, N, rounding_mode="floor"), index % N), dim=-1).long()


def _assign(
    probs: _Probabilities, selected: Tensor, filter_rate: float, filter_bar: float, activation_bar_ratio: float
) -> tuple[float, Tensor]:
    """The activation bar and the assignments ``[K, C]``: selected neuron above the bar for class c."""
    n = len(probs.finite)
    if round(n * activation_bar_ratio) == round(n * filter_rate):
        activation_bar = filter_bar  # same order statistic: skip the second kthvalue
    else:
        activation_bar = _kth_bar(probs.finite, activation_bar_ratio, "activation_bar_ratio")
    return activation_bar, probs.p0[selected[:, 0], selected[:, 1]] > activation_bar


def identify(
    over_zero: Tensor,
    *,
    mode: Mode = "default",
    top_rate: float = DEFAULT_TOP_RATE,
    filter_rate: float = FILTER_RATE,
    activation_bar_ratio: float = ACTIVATION_BAR_RATIO,
    drop_empty_classes: bool | None = None,
    tie_break: Literal["topk", "index"] | None = None,
    exclude_filtered: bool | None = None,
    warn_saturation: bool | None = None,
    min_activity: float | None = None,
) -> Identification:
    """AAPE selection with full diagnostics: validate → entropy → filter bar → select → assign.

    Args:
        over_zero: ``[L, N, C]`` activation probabilities ``count / n_tokens`` (NaN = absent neuron).
        mode: ``"default"`` (defects fixed) or ``"lape"`` (LAPE ``identify.py`` exactly).
        top_rate: share of present neurons selected by lowest entropy.
        filter_rate: quantile of all probabilities a neuron must exceed for at least one class.
        activation_bar_ratio: quantile of all probabilities a selected neuron must exceed for a class to
            be assigned to it.
        drop_empty_classes, tie_break, exclude_filtered, warn_saturation: override one option of the mode
            (see :class:`SelectionOptions`); ``None`` keeps the mode's value.
        min_activity: neurons below it in every class are never selected (None: :data:`MIN_ACTIVITY` in
            ``default`` mode, 0 in ``lape`` mode).

    Returns:
        :class:`Identification`.

    >>> p = torch.tensor([[[0.9, 0.0], [0.5, 0.5]], [[0.0, 0.8], [0.1, 0.1]]])  # L=2, N=2, C=2
    >>> r = identify(p, top_rate=0.5, filter_rate=0.5, activation_bar_ratio=0.5)
    >>> r.selected.tolist(), r.assignments.tolist()
    ([[0, 0], [1, 0]], [[True, False], [False, True]])
    >>> [[t.tolist() for t in cls] for cls in r.neurons]
    [[[0], []], [[], [0]]]
    """
    check_rates(top_rate, filter_rate, activation_bar_ratio)
    opts = SelectionOptions.for_mode(mode)
    overrides = {
        k: v
        for k, v in dict(
            drop_empty_classes=drop_empty_classes,
            tie_break=tie_break,
            exclude_filtered=exclude_filtered,
            warn_saturation=warn_saturation,
        ).items()
        if v is not None
    }
    if overrides:
        opts = replace(opts, **overrides)
    log.info(
        "AAPE mode=%s top_rate=%s filter_rate=%s activation_bar_ratio=%s options=%s",
        mode,
        top_rate,
        filter_rate,
        activation_bar_ratio,
        opts,
    )
    warn = _Warnings()
    probs = _validate(over_zero, warn)
    L, N, C = probs.p.shape

    ent = entropy(normalise(probs.p, probs.has_nan))  # LAPE's exact float ops
    ent_out = ent.clone()  # raw entropy for reporting; ``ent`` gets +inf for filtered neurons
    filter_bar, top_position = _filter(probs, ent, filter_rate)
    min_activity = (0.0 if mode == "lape" else MIN_ACTIVITY) if min_activity is None else float(min_activity)
    inactive = inactive_neurons(probs.p, min_activity)
    ent[inactive] = torch.inf  # like a neuron failing the filter bar
    if int(inactive.sum()):
        log.info("%d neurons active below %s in every class are never selected", int(inactive.sum()), min_activity)
    k = round(probs.n_present * top_rate)
    selected = _select(probs, ent, k, opts, filter_bar, top_rate, warn)
    activation_bar, assignments = _assign(probs, selected, filter_rate, filter_bar, activation_bar_ratio)

    if opts.warn_saturation:
        for name, bar in (("filter bar", filter_bar), ("activation bar", activation_bar)):
            if bar >= probs.pmax:
                warn.warn(
                    f"{name} {bar:.6g} equals the largest activation probability: the quantile "
                    f"saturates and no neuron can exceed it",
                    SaturationWarning,
                )
    neurons = per_class_lists(selected, assignments, L, opts.drop_empty_classes)
    if not opts.drop_empty_classes:
        empty = [c for c in range(C) if not bool(assignments[:, c].any())]
        if empty:
            log.info("classes without neurons (kept with zero neurons): %s", empty)

    ln_c = math.log(C) if C > 1 else float("nan")
    ent_out[probs.absent] = float("nan")
    return Identification(
        p=probs.p,
        entropy=ent_out,
        normalised_entropy=ent_out / ln_c,
        passes_filter=(top_position > 0) & ~probs.absent,
        selected=selected,
        assignments=assignments,
        neurons=neurons,
        filter_bar=filter_bar,
        activation_bar=activation_bar,
        n_requested=k,
        mode=mode,
        top_rate=top_rate,
        filter_rate=filter_rate,
        activation_bar_ratio=activation_bar_ratio,
        options=opts,
        warnings=list(warn),
        min_activity=min_activity,
        n_inactive=int(inactive.sum()),
    )


def select_neurons(
    over_zero: Tensor,
    *,
    mode: Mode = "default",
    top_rate: float = DEFAULT_TOP_RATE,
    filter_rate: float = FILTER_RATE,
    activation_bar_ratio: float = ACTIVATION_BAR_RATIO,
    **options: object,
) -> list[list[Tensor]]:
    """Class-specific neurons in the LAPE mask format: class → layer → LongTensor of neuron ids.

    ``over_zero``: ``[L, N, C]`` activation probabilities. See :func:`identify` for the arguments
    (``options`` are the named overrides of :class:`SelectionOptions`).

    >>> p = torch.zeros(1, 4, 3); p[0, 0, 0] = 0.9; p[0, 1] = 0.5
    >>> [[t.tolist() for t in c] for c in select_neurons(p, top_rate=0.25, filter_rate=0.9, activation_bar_ratio=0.9)]
    [[[0]], [[]], [[]]]
    >>> select_neurons(p, mode="lape", top_rate=0.25, filter_rate=0.9, activation_bar_ratio=0.9)
    [[tensor([0])]]
    """
    return identify(
        over_zero,
        mode=mode,
        top_rate=top_rate,
        filter_rate=filter_rate,
        activation_bar_ratio=activation_bar_ratio,
        **options,
    ).neurons  # type: ignore[arg-type]
