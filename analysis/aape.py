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
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

import torch
from torch import Tensor

log = logging.getLogger(__name__)

Mode = Literal["default", "lape"]

# The selection defaults (the study's); every caller imports them from here.
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


class SaturationWarning(UserWarning):
    """A selection bar equals the largest activation probability: no neuron can exceed it."""


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


def absent_neurons(over_zero: Tensor) -> Tensor:
    """BoolTensor ``[L, N]``: neurons that do not exist, i.e. NaN for **every** class (the padding of
    ragged sites). A NaN in some classes only (a class with nothing counted) does not make a neuron absent.

    >>> absent_neurons(torch.tensor([[[0.5, float("nan")], [float("nan"), float("nan")]]]))
    tensor([[False,  True]])
    """
    return torch.isnan(over_zero).all(dim=-1)


def activation_probability(count: Tensor, n_tokens: Tensor, site_neurons: list[int] | None = None) -> Tensor:
    """Conditional activation probability ``p[l, n, c] = count[l, n, c] / n_tokens[c]``.

    Args:
        count: ``[L, N, C]`` integer counts of positions with activation > 0.
        n_tokens: ``[C]`` counted positions per class.
        site_neurons: optional neurons per site (length ``L``); entries ``n >= site_neurons[l]`` become
            NaN (absent neurons of ragged sites).

    Returns:
        float32 ``[L, N, C]``. A class with ``n_tokens == 0`` gives NaN in its column.

    >>> activation_probability(torch.tensor([[[1, 0], [2, 4]]]), torch.tensor([2, 4]))
    tensor([[[0.5000, 0.0000],
             [1.0000, 1.0000]]])
    >>> activation_probability(torch.tensor([[[1], [0]], [[1], [1]]]), torch.tensor([2]), [1, 2])[..., 0]
    tensor([[0.5000,    nan],
            [0.5000, 0.5000]])
    """
    if count.dim() != 3:
        raise ValueError(f"count must be [L, N, C], got shape {tuple(count.shape)}")
    if n_tokens.shape != (count.shape[-1],):
        raise ValueError(f"n_tokens must be [C={count.shape[-1]}], got shape {tuple(n_tokens.shape)}")
    p = (count.double() / n_tokens.double()).float()
    if site_neurons is not None:
        if len(site_neurons) != count.shape[0]:
            raise ValueError(f"site_neurons has {len(site_neurons)} entries for {count.shape[0]} sites")
        for l, n in enumerate(site_neurons):
            p[l, int(n) :] = float("nan")
    return p


def inactive_neurons(over_zero: Tensor, min_activity: float = MIN_ACTIVITY) -> Tensor:
    """``[L, N, C]`` → bool ``[L, N]``: present neurons whose activation probability is below
    ``min_activity`` in every class (absent neurons are not counted; ``min_activity = 0``: none).

    >>> inactive_neurons(torch.tensor([[[0.005, 0.0], [0.5, 0.0], [float("nan")] * 2]])).tolist()
    [[True, False, False]]
    """
    p = torch.nan_to_num(over_zero.float(), nan=0.0)
    return (p.amax(-1) < float(min_activity)) & ~absent_neurons(over_zero)


def normalise(p: Tensor) -> Tensor:
    """Normalise over classes: ``q = p / p.sum(-1)``; NaN (absent entries, all-zero rows) become 0.

    ``p``: ``[..., C]`` → ``q``: ``[..., C]``. On finite input this is exactly LAPE's operation.

    >>> normalise(torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    tensor([[0.2500, 0.7500],
            [0.0000, 0.0000]])
    """
    return _normalise(p, bool(torch.isnan(p).any()))


def _normalise(p: Tensor, has_nan: bool) -> Tensor:
    if has_nan:
        p = torch.nan_to_num(p, nan=0.0)
    q = p / p.sum(dim=-1, keepdim=True)
    q[torch.isnan(q)] = 0
    return q


def entropy(q: Tensor) -> Tensor:
    """Shannon entropy (natural log, ``0 log 0 = 0``) over the last axis: ``[..., C]`` → ``[...]``.

    >>> entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    tensor([0.6931, -0.0000])
    """
    log_q = torch.where(q > 0, q.log(), 0)
    return -torch.sum(q * log_q, dim=-1)


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


def _per_class_lists(selected: Tensor, assignments: Tensor, num_layers: int, drop_empty: bool) -> list[list[Tensor]]:
    """class → layer → ascending LongTensor of neuron ids, from ``selected [K,2]`` and ``assignments [K,C]``."""
    C = assignments.shape[1]
    cls, k = torch.where(assignments.T)  # sorted by class, then rank
    n_out = C
    if drop_empty:
        n_out = int(cls.max().item()) + 1 if cls.numel() else 0
    layer, neuron = selected[k, 0], selected[k, 1]
    n_max = int(neuron.max().item()) + 1 if neuron.numel() else 1
    key = (cls * num_layers + layer) * n_max + neuron  # one sort orders by (class, layer, neuron)
    order = torch.sort(key).indices
    neuron = neuron[order].long()
    sizes = torch.bincount(cls * num_layers + layer, minlength=C * num_layers).tolist()
    chunks = torch.split(neuron, sizes)
    return [[chunks[c * num_layers + l].clone() for l in range(num_layers)] for c in range(n_out)]


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

    ent = entropy(_normalise(probs.p, probs.has_nan))  # LAPE's exact float ops
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
    neurons = _per_class_lists(selected, assignments, L, opts.drop_empty_classes)
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


def normalised_entropy(over_zero: Tensor) -> Tensor:
    """``H(q) / ln C`` of every neuron, ``[L, N, C]`` → float32 ``[L, N]`` in [0, 1] (the quantity AAPE
    ranks by, without any quantile bar): 0 = fires for one class only, 1 = equally for all. NaN for absent
    neurons and for dead ones (``p = 0`` for every class: no distribution over classes to measure).

    >>> normalised_entropy(torch.tensor([[[0.9, 0.0], [0.5, 0.5], [0.0, 0.0]]]))
    tensor([[0., 1., nan]])
    """
    p = over_zero.float()
    if p.dim() != 3 or p.shape[-1] < 2:
        raise ValueError(f"over_zero must be [L, N, C] with C >= 2, got shape {tuple(p.shape)}")
    p0 = torch.nan_to_num(p, nan=0.0)
    h = entropy(_normalise(p0, False)).abs() / math.log(p.shape[-1])  # abs: no -0.0
    h[absent_neurons(p) | (p0.sum(-1) == 0)] = float("nan")
    return h


def lowest_entropy_by_class(
    over_zero: Tensor, k: int, min_activity: float = MIN_ACTIVITY
) -> list[list[tuple[int, int]]]:
    """For each class, up to ``k`` neurons ``(layer, neuron)`` that prefer it (their largest activation
    probability is for that class; ties: the lowest class index), lowest entropy first (ties by (layer,
    neuron)). Absent and dead neurons are left out (see :func:`normalised_entropy`), and so are the
    neurons below ``min_activity`` in every class (:func:`inactive_neurons`). No quantile bar is applied:
    every model has such neurons, whether or not the selection's bars select any.

    >>> p = torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.3], [0.0, 0.0]]])  # L=1, N=4, C=2
    >>> lowest_entropy_by_class(p, 2)
    [[(0, 0), (0, 1)], [(0, 2)]]
    """
    h = normalised_entropy(over_zero)
    h[inactive_neurons(over_zero, min_activity)] = float("nan")
    L, N = h.shape
    pref = torch.nan_to_num(over_zero.float(), nan=-1.0).argmax(-1)  # first maximum
    flat_h, flat_pref = h.flatten(), pref.flatten()
    order = torch.sort(torch.nan_to_num(flat_h, nan=float("inf")), stable=True).indices
    order = order[~torch.isnan(flat_h[order])]
    out = []
    for c in range(over_zero.shape[-1]):
        idx = order[flat_pref[order] == c][: int(k)].tolist()
        out.append([(i // N, i % N) for i in idx])
    return out


def neurons_to_masks(neurons: list[list[Tensor]], num_classes: int, shape: tuple[int, int]) -> Tensor:
    """LAPE mask list → ``[C, L, N]`` bool; classes missing from a (``lape``-truncated) list are empty.

    >>> neurons_to_masks([[torch.tensor([1]), torch.tensor([], dtype=torch.long)]], 2, (2, 3)).nonzero().tolist()
    [[0, 0, 1]]
    """
    L, N = shape
    m = torch.zeros(num_classes, L, N, dtype=torch.bool)
    if len(neurons) > num_classes:
        raise ValueError(f"neuron list has {len(neurons)} classes, expected at most {num_classes}")
    for c, layers in enumerate(neurons):
        if len(layers) != L:
            raise ValueError(f"class {c} of the neuron list has {len(layers)} layers, expected {L}")
        for l, ids in enumerate(layers):
            ids = torch.as_tensor(ids, dtype=torch.long)
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= N):
                raise ValueError(f"class {c} layer {l}: neuron ids outside [0, {N})")
            m[c, l, ids] = True
    return m
