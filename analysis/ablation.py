"""Neuron ablation: functional core (plain tensor functions, no Trainer).

Vocabulary
----------
* A *neuron set* is a BoolTensor mask ``[L, N]`` over (site, neuron); ``N = max(site_neurons)`` and
  entries of neurons that do not exist at a ragged site are always False.
* A :class:`Condition` is one way of running the encoder: a name, a kind (``baseline``, ``class``,
  ``explicit``, ``shared``, ``random``, ``index_plus_one``, ``topk``, ``lowent``), the class(es) it
  targets, its ``k`` (top-k and lowest-entropy only), its random ``draw`` (random only), the ``group`` it
  is summarised in, and its mask. ``lowent:<c>:<k>`` are the ``k`` lowest-entropy neurons that prefer class
  ``c`` (:func:`analysis.aape.lowest_entropy_by_class`), whatever the selection's quantile bars select.
* :func:`site_scales` turns conditions into per-site affine maps ``x * scale + shift`` on the channel
  axis: chosen channels get ``scale = gain, shift = 0`` (gain mode, 0 = zero ablation as the study) or
  ``scale = 0, shift = mean`` (mean mode); all other channels get exactly ``scale = 1, shift = 0``, so
  they are bit-for-bit unchanged.
* Scoring accumulates per condition × class ``correct`` and ``n`` counts and per condition the confusion
  counts ``[K, C, C]`` (all int64, on the device, so partial counts merge exactly by summation); under
  DDP each clip is scored by one process only (:func:`owned_positions`) and the processes' counts are
  summed in one reduce (:func:`pack_counts`); :func:`results_table` turns them into the rows of
  ``ablation.csv``, :func:`summarise` into ``ablation_summary.csv`` and :func:`confusion_table` into
  ``ablation_confusion.csv``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analysis import draws as D
from analysis.significance import BOOTSTRAP_REPS, monte_carlo_p, paired_bootstrap_interval

log = logging.getLogger(__name__)

KINDS = ("baseline", "class", "explicit", "shared", "random", "index_plus_one", "topk", "lowent", "selector")
#: Kinds ranked by k (a curve over the k-grid); they get no index+1 control.
RANKED_KINDS = ("topk", "lowent")
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


@dataclass
class Condition:
    """One ablation condition.

    Attributes:
        name: unique name (``ablation.csv`` column ``condition``).
        kind: one of :data:`KINDS`.
        mask: BoolTensor ``[L, N]`` of ablated neurons (all False for the baseline).
        target: class names this condition targets (``on_target`` classes of the summary).
        k: top-k size (``topk``, ``lowent`` and their random controls), else None.
        draw: random draw number (``random`` only), else None.
        group: summary group: the name itself, or for random draws ``random:<parent name>``.
        parent: for controls (``random``, ``index_plus_one``), the name of the condition they control
            (None for a random draw shared by several sets).
        profile: the draw profile (:mod:`analysis.draws`) of a set tested against matched draws and of
            each of those draws; None otherwise.
        draws_used: for a set with draws, how many of its profile's draws are its matched draws (where the
            sequential stop ended its drawing; None: all of them).
    """

    name: str
    kind: str
    mask: Tensor
    target: list[str] = field(default_factory=list)
    k: Optional[int] = None
    draw: Optional[int] = None
    group: str = ""
    parent: Optional[str] = None
    profile: Optional[str] = None
    draws_used: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown condition kind {self.kind!r}; expected one of {KINDS}")
        if not self.group:
            self.group = self.name

    @property
    def n_neurons(self) -> int:
        return int(self.mask.sum())


# ----------------------------------------------------------------------------------------------
# Neuron sets
# ----------------------------------------------------------------------------------------------
def existing_mask(site_neurons: Sequence[int], n_max: Optional[int] = None) -> Tensor:
    """BoolTensor ``[L, N]``: True where neuron n exists at site l (``n < site_neurons[l]``)."""
    n_max = int(max(site_neurons)) if n_max is None else int(n_max)
    ar = torch.arange(n_max)
    return ar[None, :] < torch.as_tensor(list(site_neurons))[:, None]


def mask_from_layers(layers: Sequence[Tensor], site_neurons: Sequence[int], source: str = "neurons") -> Tensor:
    """Mask ``[L, N]`` from the LAPE/AAPE format (list over sites of LongTensor neuron ids).

    Raises ValueError naming ``source`` on a wrong number of sites or an id outside its site."""
    L = len(site_neurons)
    if len(layers) != L:
        raise ValueError(f"{source}: {len(layers)} layers given, the encoder has {L} neuron sites")
    mask = torch.zeros(L, int(max(site_neurons)), dtype=torch.bool)
    for l, ids in enumerate(layers):
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if ids.numel() == 0:
            continue
        bad = ids[(ids < 0) | (ids >= site_neurons[l])]
        if bad.numel():
            raise ValueError(f"{source}: layer {l} has neuron ids {bad.tolist()} outside 0..{site_neurons[l] - 1}")
        mask[l, ids] = True
    return mask


def mask_from_pairs(pairs: Iterable[Sequence[int]], site_neurons: Sequence[int], source: str = "neurons") -> Tensor:
    """Mask ``[L, N]`` from an explicit list ``[[layer, neuron], ...]`` (the study's format)."""
    L = len(site_neurons)
    mask = torch.zeros(L, int(max(site_neurons)), dtype=torch.bool)
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"{source}: entry {i} is {list(pair)!r}; expected [layer, neuron]")
        l, n = int(pair[0]), int(pair[1])
        if not 0 <= l < L:
            raise ValueError(f"{source}: entry {i} [{l}, {n}]: layer {l} outside 0..{L - 1}")
        if not 0 <= n < site_neurons[l]:
            raise ValueError(
                f"{source}: entry {i} [{l}, {n}]: neuron {n} outside 0..{site_neurons[l] - 1} of layer {l}"
            )
        mask[l, n] = True
    return mask


def mask_to_pairs(mask: Tensor) -> list[list[int]]:
    """``[[layer, neuron], ...]`` of a mask, sorted by (layer, neuron)."""
    return [[int(l), int(n)] for l, n in mask.nonzero().tolist()]


def index_plus_one(mask: Tensor, site_neurons: Sequence[int], source: str = "neurons") -> Tensor:
    """The study authors' control: every selected neuron's index + 1 in the same layer (one draw).

    The last neuron of a site wraps around to neuron 0 (the authors' lists never hit that case; a
    warning is logged). As in the authors' configs, a +1 neighbour that is itself in the set is not
    replaced, so the control can be smaller than the set."""
    out = torch.zeros_like(mask)
    for l, n in mask.nonzero().tolist():
        m = n + 1
        if m >= site_neurons[l]:
            log.warning("%s: index+1 control of [%d, %d] wraps around to [%d, 0]", source, l, n, l)
            m = 0
        out[l, m] = True
    return out


def topk_mask(ranked: Sequence[tuple[int, int]], k: int, shape: tuple[int, int]) -> Tensor:
    """Mask of the first ``k`` (layer, neuron) pairs of ``ranked`` (best first)."""
    m = torch.zeros(shape, dtype=torch.bool)
    for l, n in list(ranked)[:k]:
        m[l, n] = True
    return m


# ----------------------------------------------------------------------------------------------
# Condition building
# ----------------------------------------------------------------------------------------------
def per_class_conditions(classes: Sequence[str], class_sets: dict[str, Tensor]) -> list[Condition]:
    """One ``class:<c>`` condition per class whose AAPE set is not empty (class order)."""
    return [
        Condition(f"class:{c}", "class", class_sets[c].clone(), [c])
        for c in classes
        if class_sets.get(c) is not None and bool(class_sets[c].any())
    ]


def shared_conditions(groups: Sequence[Sequence[str]], class_sets: dict[str, Tensor]) -> list[Condition]:
    """``shared:A&B`` = the intersection of the AAPE sets of each group of classes."""
    out = []
    for group in groups:
        group = list(group)
        missing = [c for c in group if c not in class_sets]
        if missing:
            raise ValueError(f"shared set {group}: no AAPE set for class(es) {missing}")
        m = class_sets[group[0]].clone()
        for c in group[1:]:
            m &= class_sets[c]
        out.append(Condition("shared:" + "&".join(group), "shared", m, group))
    return out


def selector_conditions(classes: Sequence[str], selector_sets: dict[str, dict[str, Tensor]]) -> list[Condition]:
    """``<selector>:<c>``: each baseline selector's set of class c (:mod:`analysis.selectors`), non-empty only."""
    return [
        Condition(f"{sel}:{c}", "selector", sets[c].clone(), [c])
        for sel, sets in selector_sets.items()
        for c in classes
        if c in sets and bool(sets[c].any())
    ]


def explicit_conditions(explicit: dict[str, tuple[Tensor, list[str]]]) -> list[Condition]:
    """One condition per explicit list: name → (mask, target class names)."""
    return [Condition(name, "explicit", m.clone(), list(targets)) for name, (m, targets) in explicit.items()]


def topk_conditions(
    ranked: dict[str, list[tuple[int, int]]], k_grid: Sequence[int], shape: tuple[int, int], kind: str = "topk"
) -> list[Condition]:
    """``<kind>:<c>:<k>``: the first k neurons of each class's ranking, for every k of the grid that the
    class's ranking can fill (``topk``: the class's AAPE set by AAPE rank; ``lowent``: the neurons that
    prefer the class, lowest entropy first)."""
    return [
        Condition(f"{kind}:{c}:{k}", kind, topk_mask(order, k, shape), [c], k=int(k))
        for c, order in ranked.items()
        for k in k_grid
        if k <= len(order)
    ]


def control_conditions(
    parents: Sequence[Condition],
    available: Tensor,
    site_neurons: Sequence[int],
    *,
    random_draws: int,
    random_for_topk: bool,
    index_plus_one_control: bool,
    seed: int,
    lowest_entropy_draws: Optional[int] = None,
    share_draws: bool = True,
) -> list[Condition]:
    """Controls of each non-empty parent: ``random_draws`` size- and layer-matched random sets drawn from
    ``available [L, N]`` (top-k parents only with ``random_for_topk``, lowest-entropy parents always,
    ``lowest_entropy_draws`` of them when given), and the authors' index+1 control (not for top-k or
    lowest-entropy parents).

    Draw ``d`` of a parent depends only on (``seed``, the parent's neurons per site, ``d``)
    (:func:`analysis.draws.profile_draw`). ``share_draws``: parents with the same neurons per site share
    one sequence of draws ``random:<profile>:<d>`` (each parent's ``profile`` names it); otherwise each
    parent gets its own copies ``random:<parent>:<d>`` (the same masks). Sets the parents' ``profile``."""
    controls: list[Condition] = []
    made: dict[str, int] = {}
    for cond in parents:
        if not cond.mask.any():
            continue
        n_draws = lowest_entropy_draws if cond.kind == "lowent" and lowest_entropy_draws is not None else random_draws
        if n_draws > 0 and (cond.kind != "topk" or random_for_topk):
            prof = D.size_profile(cond.mask)
            key = D.profile_name(prof) if share_draws else cond.name
            cond.profile = key
            for d in range(made.get(key, 0), n_draws):
                m = D.profile_draw(prof, available, seed, d, cond.name)
                controls.append(
                    Condition(
                        f"random:{key}:{d}",
                        "random",
                        m,
                        [] if share_draws else list(cond.target),
                        k=None if share_draws else cond.k,
                        draw=d,
                        group=f"random:{key}",
                        parent=None if share_draws else cond.name,
                        profile=key,
                    )
                )
            made[key] = max(made.get(key, 0), n_draws)
        if index_plus_one_control and cond.kind not in RANKED_KINDS:
            controls.append(
                Condition(
                    f"index+1:{cond.name}",
                    "index_plus_one",
                    index_plus_one(cond.mask, site_neurons, cond.name),
                    list(cond.target),
                    parent=cond.name,
                )
            )
    return controls


def build_conditions(
    site_neurons: Sequence[int],
    classes: Sequence[str],
    *,
    class_sets: Optional[dict[str, Tensor]] = None,
    class_conditions: bool = True,
    explicit: Optional[dict[str, tuple[Tensor, list[str]]]] = None,
    shared: Optional[Sequence[Sequence[str]]] = None,
    ranked: Optional[dict[str, list[tuple[int, int]]]] = None,
    k_grid: Sequence[int] = (),
    lowest_entropy: Optional[dict[str, list[tuple[int, int]]]] = None,
    lowest_entropy_k: Sequence[int] = (),
    lowest_entropy_draws: Optional[int] = None,
    random_draws: int = 10,
    random_for_topk: bool = True,
    index_plus_one_control: bool = False,
    exclude: Optional[Tensor] = None,
    absent: Optional[Tensor] = None,
    seed: int = 0,
    share_draws: bool = True,
    selector_sets: Optional[dict[str, dict[str, Tensor]]] = None,
) -> list[Condition]:
    """All conditions of one ablation run: baseline, then class, shared, explicit, top-k and
    lowest-entropy conditions, then their controls.

    Args:
        site_neurons: neurons per site (ragged sites allowed).
        classes: class names (index order).
        class_sets: class name → mask ``[L, N]`` (each class's AAPE set); a ``class`` condition each
            (classes with an empty set are skipped); also used by ``shared`` and to exclude selected
            neurons from random draws.
        class_conditions: add the per-class conditions (False: class sets only feed shared/exclusion).
        explicit: name → (mask, target class names): the study's explicit lists.
        shared: groups of class names; condition ``shared:A&B`` = intersection of their class sets.
        ranked: class name → its neurons best first (AAPE rank), for the ``topk`` conditions.
        k_grid: the k values of the top-k curve (k larger than a class's set is skipped).
        lowest_entropy: class name → the neurons preferring it, lowest entropy first
            (:func:`analysis.aape.lowest_entropy_by_class`): a ``lowent:<c>:<k>`` condition per k of
            ``lowest_entropy_k``, each with matched random draws (threshold-free, so defined even where
            the selection's bars select nothing).
        lowest_entropy_k: the k values of the lowest-entropy conditions.
        lowest_entropy_draws: random draws per lowest-entropy condition (default ``random_draws``).
        random_draws: matched random draws per class/explicit/shared (and top-k) condition.
        random_for_topk: also draw random controls for the top-k conditions.
        index_plus_one_control: add the authors' index+1 control for every class/explicit/shared condition.
        exclude: mask ``[L, N]`` never drawn at random (the selected neurons); the condition's own
            neurons are always excluded.
        absent: mask ``[L, N]`` of neurons that do not exist (:func:`analysis.aape.absent_neurons`;
            beyond a ragged site's size is added automatically).
        seed: base seed of the random draws.
        share_draws: sets with the same neurons per site share their matched draws
            (:func:`control_conditions`). Random draws never take a neuron of any tested set.
        selector_sets: selector name → class name → mask ``[L, N]``: the baseline selectors' sets
            (:mod:`analysis.selectors`, the AAPE sets' per-layer sizes), a ``selector`` condition
            ``<selector>:<c>`` each, with matched random draws like the class sets.
    """
    L, N = len(site_neurons), int(max(site_neurons))
    class_sets = class_sets or {}
    exists = existing_mask(site_neurons, N)
    if absent is not None:
        exists = exists & ~absent.bool()
    excluded = torch.zeros(L, N, dtype=torch.bool) if exclude is None else exclude.bool().clone()
    for name in classes:
        if class_sets.get(name) is not None:
            excluded |= class_sets[name]

    primary = per_class_conditions(classes, class_sets) if class_sets and class_conditions else []
    primary += shared_conditions(shared or (), class_sets) + explicit_conditions(explicit or {})
    primary += selector_conditions(classes, selector_sets or {})
    topk = topk_conditions(ranked or {}, k_grid, (L, N))
    topk += topk_conditions(lowest_entropy or {}, lowest_entropy_k, (L, N), kind="lowent")
    conds = [Condition("baseline", "baseline", torch.zeros(L, N, dtype=torch.bool))] + primary + topk
    names = [c.name for c in conds]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate condition names {sorted(dup)}")
    for c in primary + topk:
        excluded |= c.mask
    return conds + control_conditions(
        primary + topk,
        exists & ~excluded,
        site_neurons,
        random_draws=random_draws,
        random_for_topk=random_for_topk,
        index_plus_one_control=index_plus_one_control,
        seed=seed,
        lowest_entropy_draws=lowest_entropy_draws,
        share_draws=share_draws,
    )


def describe_conditions(conditions: Sequence[Condition]) -> list[dict]:
    """JSON-ready description of each condition: name, kind, targets, k, draw, group, parent and its
    neurons as ``[[layer, neuron], ...]``."""
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "target": c.target,
            "k": c.k,
            "draw": c.draw,
            "group": c.group,
            "parent": c.parent,
            "profile": c.profile,
            "draws_used": c.draws_used,
            "neurons": mask_to_pairs(c.mask),
        }
        for c in conditions
    ]


# ----------------------------------------------------------------------------------------------
# Per-site affine maps
# ----------------------------------------------------------------------------------------------
def site_scales(
    conditions: Sequence[Condition],
    site_neurons: Sequence[int],
    *,
    gain: float = 0.0,
    mode: str = "gain",
    means: Optional[Tensor] = None,
) -> tuple[list[Tensor], list[Tensor], list[bool]]:
    """Per site l: ``scale[l]``, ``shift[l]`` float32 ``[K, site_neurons[l]]`` (K conditions) and
    ``active[l]`` (does any condition touch site l).

    Gain mode: chosen channels ``x * gain``; mean mode: chosen channels replaced by ``means[l, n]``
    (float ``[L, N]``, the dataset mean from ``stats.pt``). Unchosen channels: scale 1, shift 0."""
    if mode not in ("gain", "mean"):
        raise ValueError(f"Unknown ablation mode {mode!r}; expected 'gain' or 'mean'")
    if mode == "mean" and means is None:
        raise ValueError("mode='mean' needs the dataset means (act_sum / n_positions from stats.pt)")
    K = len(conditions)
    scales, shifts, active = [], [], []
    for l, n_l in enumerate(site_neurons):
        m = torch.stack([c.mask[l, :n_l] for c in conditions]) if K else torch.zeros(0, n_l, dtype=torch.bool)
        sc = torch.ones(K, n_l)
        sh = torch.zeros(K, n_l)
        if mode == "gain":
            sc[m] = float(gain)
        else:
            sc[m] = 0.0
            sh = torch.where(m, means[l, :n_l].float()[None, :].expand(K, n_l), sh)
        scales.append(sc)
        shifts.append(sh)
        active.append(bool(m.any()))
    return scales, shifts, active


def apply_channel_affine(
    output: Tensor, scale: Tensor, shift: Tensor, channel_axis: int, row_condition: Optional[Tensor] = None
) -> Tensor:
    """``output * scale + shift`` along ``channel_axis``.

    Args:
        output: site output, e.g. ``[R, P, N]`` (ViT, axis -1) or ``[R, N, T]`` (conv, axis 1).
        scale, shift: ``[N]`` (one condition for every row) or ``[K, N]`` with ``row_condition``
            LongTensor ``[R]`` giving each row's condition (batch expanded over conditions).
    """
    ax = channel_axis % output.dim()
    n = output.shape[ax]
    if scale.shape[-1] != n:
        raise ValueError(f"site output has {n} channels on axis {channel_axis}, the neuron mask {scale.shape[-1]}")
    if row_condition is None:
        shape = [1] * output.dim()
        shape[ax] = n
        sc, sh = scale.reshape(shape), shift.reshape(shape)
    else:
        if ax == 0:
            raise ValueError("channel_axis 0 cannot be combined with per-row conditions")
        shape = [1] * output.dim()
        shape[0], shape[ax] = output.shape[0], n
        sc = scale[row_condition].reshape(shape)
        sh = shift[row_condition].reshape(shape)
    sc = sc.to(device=output.device, dtype=output.dtype)
    sh = sh.to(device=output.device, dtype=output.dtype)
    return torch.addcmul(sh, output, sc)


def dataset_means(stats: dict, source: str = "statistics") -> Tensor:
    """Mean activation per neuron ``[L, N]`` float64 = ``act_sum / n_positions``.

    ``n_positions`` is taken from ``stats['n_positions']`` when present, else ``n_tokens.sum()`` (valid
    for single-label tasks, where each counted position belongs to exactly one class)."""
    if "act_sum" not in stats:
        raise ValueError(
            f"{source}: no 'act_sum' (needed for mode='mean'; run the statistics with act_sum: true or top_k > 0)"
        )
    if "n_positions" in stats:
        n_pos = torch.as_tensor(stats["n_positions"], dtype=torch.float64)
    elif "n_tokens" in stats:
        if stats.get("multilabel", False):
            raise ValueError(f"{source}: multi-label stats need 'n_positions' for mean ablation")
        n_pos = torch.as_tensor(stats["n_tokens"], dtype=torch.float64).sum()
    else:
        raise ValueError(f"{source}: neither 'n_positions' nor 'n_tokens' present")
    if float(n_pos.min() if n_pos.dim() else n_pos) <= 0:
        raise ValueError(f"{source}: no counted positions (n_positions = {n_pos.tolist()})")
    act = torch.as_tensor(stats["act_sum"], dtype=torch.float64)
    return act / (n_pos[:, None] if n_pos.dim() == 1 else n_pos)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def count_correct(preds: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per condition × class counts.

    Args:
        preds: LongTensor ``[K, B]`` predicted class per condition and clip.
        labels: LongTensor ``[B]``.
    Returns: ``correct`` int64 ``[K, C]`` (clips of class c predicted c), ``n`` int64 ``[C]``, on the
    predictions' device (no copy back to the host).
    """
    labels = labels.long().to(preds.device)
    n = torch.zeros(num_classes, dtype=torch.long, device=preds.device).index_add_(0, labels, torch.ones_like(labels))
    hit = (preds == labels[None, :]).long()  # [K, B]
    correct = torch.zeros(preds.shape[0], num_classes, dtype=torch.long, device=preds.device)
    correct.index_add_(1, labels, hit)
    return correct, n


def pack_counts(counts: Sequence[Tensor]) -> Tensor:
    """Integer count tensors (any shapes) as one flat int64 tensor, so processes sum them in one reduce.

    >>> flat = pack_counts([torch.ones(2, 3, dtype=torch.long), torch.arange(2)])
    >>> [t.tolist() for t in unpack_counts(flat, [(2, 3), (2,)])]
    [[[1, 1, 1], [1, 1, 1]], [0, 1]]
    """
    return torch.cat([c.long().flatten() for c in counts])


def unpack_counts(flat: Tensor, shapes: Sequence[Sequence[int]]) -> list[Tensor]:
    """Inverse of :func:`pack_counts` for tensors of ``shapes``."""
    sizes = [math.prod(s) for s in shapes]
    return [t.view(*s) for t, s in zip(torch.split(flat, sizes), shapes)]


def owned_positions(positions: Sequence[Sequence[int]], rank: int) -> list[bool]:
    """Which of process ``rank``'s samples it scores when processes may have received the same dataset
    position twice (DDP pads the test data with repeated clips): each position counts once, for the first
    process in rank order (and the first time in that process's sequence) that holds it.

    Args:
        positions: every process's dataset positions in its iteration order.

    >>> owned_positions([[0, 2, 4], [1, 3, 0]], 1)
    [True, True, False]
    """
    owner: dict[int, tuple[int, int]] = {}
    for r, seq in enumerate(positions):
        for j, p in enumerate(seq):
            owner.setdefault(int(p), (r, j))
    return [owner[int(p)] == (rank, j) for j, p in enumerate(positions[rank])]


def count_flips(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per condition × class, the clips whose correctness changed against the baseline (condition 0):
    int64 ``[2, K, C]``, ``[0]`` = *lost* (right under the baseline, wrong under the condition), ``[1]`` =
    *gained* (wrong, then right). With the class's clip count they pair each clip's baseline and condition
    outcomes, so a bootstrap over test clips needs no per-clip list, and they sum exactly over processes.

    >>> count_flips(torch.tensor([[0, 1, 1], [1, 1, 0]]), torch.tensor([0, 1, 0]), 2).tolist()
    [[[0, 0], [1, 0]], [[0, 0], [1, 0]]]
    """
    labels = labels.long().to(preds.device)
    hit = preds == labels[None, :]  # [K, B]
    out = torch.zeros(2, preds.shape[0], num_classes, dtype=torch.long, device=preds.device)
    out[0].index_add_(1, labels, (hit[:1] & ~hit).long())
    out[1].index_add_(1, labels, (~hit[:1] & hit).long())
    return out


def count_confusion(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per condition confusion counts int64 ``[K, C, C]``: ``[k, true class, predicted class]``.

    Args:
        preds: LongTensor ``[K, B]`` predicted class per condition and clip.
        labels: LongTensor ``[B]``.

    >>> count_confusion(torch.tensor([[0, 1, 1], [1, 1, 1]]), torch.tensor([0, 1, 0]), 2).tolist()
    [[[1, 1], [0, 1]], [[0, 2], [0, 1]]]
    """
    labels = labels.long().to(preds.device)
    C = int(num_classes)
    cell = labels[None, :] * C + preds.long()  # [K, B]
    out = torch.zeros(preds.shape[0], C * C, dtype=torch.long, device=preds.device)
    out.scatter_add_(1, cell, torch.ones_like(cell))
    return out.view(-1, C, C)


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
    """Rows of ``ablation_summary.csv``: one per condition group × class.

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
