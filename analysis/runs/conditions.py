"""Ablation conditions of a statistics run folder: the class sets of ``neurons.pt``, the AAPE ranking of
``neurons.csv``, the absent neurons of ``over_zero.pt`` and the dataset means of ``stats.pt``, handed to
the functional core (:func:`analysis.ablation.build_conditions`) with the run's
:class:`~analysis.ablation.spec.ConditionSpec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from analysis import ablation as A
from analysis.ablation.spec import ConditionSpec, NeuronList
from analysis.aape import absent_neurons, lowest_entropy_by_class
from analysis.selectors import select as select_baseline
from analysis.runs.layout import NEURONS_CSV, NEURONS_PT, OVER_ZERO, STATS
from analysis.runs.read import read_neurons, read_over_zero, read_ranking, read_stats

# NeuronList: the type of the config's neuron lists, imported from here by the pipeline's config
__all__ = [
    "NeuronList",
    "conditions_from_run",
    "rank_sets",
    "read_absent",
    "read_class_sets",
    "read_dataset_means",
    "selector_sets",
]


def read_class_sets(run_dir: Path, classes: list[str], site_neurons: list[int]) -> dict[str, Tensor]:
    """``neurons.pt`` (class → layer → LongTensor; a ``lape``-mode list without its trailing empty classes
    is accepted) as class name → mask ``[L, N]``."""
    p = Path(run_dir) / NEURONS_PT
    if not p.exists():
        raise FileNotFoundError(f"{p} not found; run `python -m analysis identify` first or set class_sets: false")
    sets = read_neurons(run_dir, len(classes), len(site_neurons))
    return {c: A.mask_from_layers(sets[i], site_neurons, f"{p} class {c!r}") for i, c in enumerate(classes)}


def read_absent(run_dir: Path, site_neurons: list[int]) -> Optional[Tensor]:
    """Mask ``[L, max(site_neurons)]`` of the neurons ``over_zero.pt`` marks absent; None without the file."""
    path = Path(run_dir) / OVER_ZERO
    if not path.exists():
        return None
    oz = read_over_zero(run_dir)
    if oz.shape[0] != len(site_neurons):
        raise ValueError(f"{path}: {oz.shape[0]} layers, the encoder has {len(site_neurons)}")
    absent = torch.zeros(len(site_neurons), max(site_neurons), dtype=torch.bool)
    w = min(oz.shape[1], absent.shape[1])
    absent[:, :w] = absent_neurons(oz[:, :w])
    return absent


def rank_sets(run_dir: Path, sets: dict[str, Tensor], classes: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """Each class's neurons ordered by their AAPE rank in ``neurons.csv`` (ties by (layer, neuron));
    classes with an empty set are left out."""
    rank = read_ranking(run_dir)
    ranked = {}
    for c in classes:
        pairs = [tuple(p) for p in A.mask_to_pairs(sets[c])]
        missing = [p for p in pairs if p not in rank]
        if missing:
            raise ValueError(f"{Path(run_dir) / NEURONS_CSV}: neurons {missing[:5]} of class {c!r} have no rank")
        if pairs:
            ranked[c] = sorted(pairs, key=lambda p: (rank[p], p))
    return ranked


def read_dataset_means(run_dir: Path) -> Tensor:
    """Mean activation per neuron ``[L, N]`` from ``stats.pt`` (for mean ablation)."""
    sp = Path(run_dir) / STATS
    if not sp.exists():
        raise FileNotFoundError(f"{sp} not found (mode='mean' needs act_sum)")
    return A.dataset_means(read_stats(run_dir), str(sp))


def selector_sets(
    run_dir: Path, classes: list[str], sets: dict[str, Tensor], selectors: Sequence[str]
) -> dict[str, dict[str, Tensor]]:
    """Selector → class → mask ``[L, N]`` of the baseline selectors (:func:`analysis.selectors.select`)
    with the AAPE sets' per-layer sizes (``sets``: class → its AAPE mask ``[L, N]``)."""
    over = read_over_zero(run_dir)
    L = over.shape[0]
    sizes = torch.stack([sets[c].sum(1) if c in sets else torch.zeros(L, dtype=torch.long) for c in classes])
    out = {}
    for sel in selectors:
        masks = select_baseline(over, sel, sizes)  # [C, L, N]
        out[sel] = {c: masks[i] for i, c in enumerate(classes)}
    return out


def conditions_from_run(
    run_dir: Optional[Path], site_neurons: list[int], classes: list[str], spec: Optional[ConditionSpec] = None
) -> list[A.Condition]:
    """The conditions of one ablation run: ``spec`` (None: the defaults of
    :class:`~analysis.ablation.spec.ConditionSpec`, the options of :class:`callbacks.AblationCallback`)
    applied to the sets of ``run_dir``.

    Class names in ``spec.neuron_lists`` targets, ``spec.shared`` and ``spec.topk_classes`` go through
    ``spec.class_aliases`` and must be classes of the task. Random draws never take a selected neuron (any
    class set or list) nor an absent one. ``spec.lowest_entropy_k`` adds the threshold-free ``lowent``
    conditions (each class's k lowest-entropy neurons, from ``over_zero.pt``) for the classes of
    ``spec.topk_classes`` (default all). ``spec.selectors`` adds each baseline selector's class sets
    (:func:`analysis.selectors.select`, as many neurons per layer as the class's AAPE set)."""
    spec = ConditionSpec() if spec is None else spec
    aliases = spec.class_aliases or {}

    def check_cls(name: str, where: str) -> str:
        c = aliases.get(name, name)
        if c not in classes:
            raise ValueError(
                f"AblationCallback {where}: unknown class {name!r}"
                + (f" (alias of {c!r})" if c != name else "")
                + f"; classes are {list(classes)}"
            )
        return c

    need_run = spec.class_sets or spec.shared or spec.k_grid or spec.selectors
    if need_run and run_dir is None:
        raise ValueError("AblationCallback: class_sets / shared / k_grid / mode='mean' need run_dir")
    sets = read_class_sets(run_dir, classes, site_neurons) if need_run else {}
    absent = read_absent(run_dir, site_neurons) if run_dir is not None else None
    selected = torch.zeros(len(site_neurons), max(site_neurons), dtype=torch.bool)
    for m in sets.values():
        selected |= m
    explicit = {}
    for nl in spec.neuron_lists:
        m = A.mask_from_pairs(nl.neurons, site_neurons, f"neuron list {nl.name!r}")
        if absent is not None and (m & absent).any():
            raise ValueError(f"neuron list {nl.name!r}: neurons {A.mask_to_pairs(m & absent)} are absent (NaN)")
        explicit[nl.name] = (m, [check_cls(t, f"neuron list {nl.name!r}") for t in nl.targets])
        selected |= m
    groups = [[check_cls(c, "shared") for c in grp] for grp in spec.shared]
    ranked = None
    tk = [check_cls(c, "topk_classes") for c in spec.topk_classes] if spec.topk_classes else list(classes)
    if spec.k_grid:
        ranked = rank_sets(run_dir, sets, tk)
    lowent = None
    if spec.lowest_entropy_k:
        if run_dir is None:
            raise ValueError("AblationCallback: lowest_entropy_k needs run_dir (over_zero.pt)")
        by_class = lowest_entropy_by_class(read_over_zero(run_dir), max(spec.lowest_entropy_k))
        lowent = {c: by_class[i] for i, c in enumerate(classes) if c in tk and by_class[i]}
    by_selector = selector_sets(run_dir, classes, sets, spec.selectors) if spec.selectors else None
    return A.build_conditions(
        site_neurons,
        classes,
        spec,
        class_sets=sets,
        selector_sets=by_selector,
        explicit=explicit,
        shared=groups,
        ranked=ranked,
        lowest_entropy=lowent,
        exclude=selected,
        absent=absent,
    )
