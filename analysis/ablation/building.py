"""Condition building: the conditions of one ablation run (baseline, class, shared, explicit, selector,
top-k and lowest-entropy sets, then their matched random draws and index+1 controls) from the neuron sets
a run folder provides and the :class:`~analysis.ablation.spec.ConditionSpec` of the run."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from analysis import draws as D
from analysis.ablation.condition import RANKED_KINDS, Condition
from analysis.ablation.masks import existing_mask, index_plus_one, mask_to_pairs, topk_mask
from analysis.ablation.spec import ConditionSpec


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
    parents: Sequence[Condition], available: Tensor, site_neurons: Sequence[int], spec: ConditionSpec
) -> list[Condition]:
    """Controls of each non-empty parent: ``spec.draws_of(kind)`` size- and layer-matched random sets drawn
    from ``available [L, N]`` (top-k parents only with ``spec.random_for_topk``, lowest-entropy parents
    always, ``spec.lowest_entropy_draws`` of them when given), and with ``spec.index_plus_one`` the authors'
    index+1 control (not for top-k or lowest-entropy parents).

    Draw ``d`` of a parent depends only on (``spec.seed``, the parent's neurons per site, ``d``)
    (:func:`analysis.draws.profile_draw`). ``spec.share_draws``: parents with the same neurons per site
    share one sequence of draws ``random:<profile>:<d>`` (each parent's ``profile`` names it); otherwise
    each parent gets its own copies ``random:<parent>:<d>`` (the same masks). Sets the parents' ``profile``."""
    share_draws, seed = spec.share_draws, spec.seed
    controls: list[Condition] = []
    made: dict[str, int] = {}
    for cond in parents:
        if not cond.mask.any():
            continue
        n_draws = spec.draws_of(cond.kind)
        if n_draws > 0 and (cond.kind != "topk" or spec.random_for_topk):
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
        if spec.index_plus_one and cond.kind not in RANKED_KINDS:
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
    spec: Optional[ConditionSpec] = None,
    *,
    class_sets: Optional[dict[str, Tensor]] = None,
    explicit: Optional[dict[str, tuple[Tensor, list[str]]]] = None,
    shared: Optional[Sequence[Sequence[str]]] = None,
    ranked: Optional[dict[str, list[tuple[int, int]]]] = None,
    lowest_entropy: Optional[dict[str, list[tuple[int, int]]]] = None,
    selector_sets: Optional[dict[str, dict[str, Tensor]]] = None,
    exclude: Optional[Tensor] = None,
    absent: Optional[Tensor] = None,
) -> list[Condition]:
    """All conditions of one ablation run: baseline, then class, shared, explicit, selector, top-k and
    lowest-entropy conditions, then their controls.

    Args:
        site_neurons: neurons per site (ragged sites allowed).
        classes: class names (index order).
        spec: the run's options (:class:`~analysis.ablation.spec.ConditionSpec`; None: its defaults):
            ``class_sets`` (add the per-class conditions; False: class sets only feed shared/exclusion),
            ``k_grid`` (the k values of the top-k curve; k larger than a class's set is skipped),
            ``lowest_entropy_k``, the matched random draws (``random_draws``, ``lowest_entropy_draws``,
            ``random_for_topk``, ``seed``, ``share_draws``: :func:`control_conditions`) and
            ``index_plus_one``. Its ``random_draws`` must be a count (``auto`` resolved).
        class_sets: class name → mask ``[L, N]`` (each class's AAPE set); a ``class`` condition each
            (classes with an empty set are skipped); also used by ``shared`` and to exclude selected
            neurons from random draws.
        explicit: name → (mask, target class names): the study's explicit lists.
        shared: groups of class names (aliases resolved); condition ``shared:A&B`` = intersection of their
            class sets.
        ranked: class name → its neurons best first (AAPE rank), for the ``topk`` conditions.
        lowest_entropy: class name → the neurons preferring it, lowest entropy first
            (:func:`analysis.aape.lowest_entropy_by_class`): a ``lowent:<c>:<k>`` condition per k of
            ``spec.lowest_entropy_k``, each with matched random draws (threshold-free, so defined even where
            the selection's bars select nothing).
        selector_sets: selector name → class name → mask ``[L, N]``: the baseline selectors' sets
            (:mod:`analysis.selectors`, the AAPE sets' per-layer sizes), a ``selector`` condition
            ``<selector>:<c>`` each, with matched random draws like the class sets.
        exclude: mask ``[L, N]`` never drawn at random (the selected neurons); the condition's own
            neurons are always excluded. Random draws never take a neuron of any tested set.
        absent: mask ``[L, N]`` of neurons that do not exist (:func:`analysis.aape.absent_neurons`;
            beyond a ragged site's size is added automatically).
    """
    spec = ConditionSpec() if spec is None else spec
    spec.draws()  # a count, not ``auto``
    L, N = len(site_neurons), int(max(site_neurons))
    class_sets = class_sets or {}
    exists = existing_mask(site_neurons, N)
    if absent is not None:
        exists = exists & ~absent.bool()
    excluded = torch.zeros(L, N, dtype=torch.bool) if exclude is None else exclude.bool().clone()
    for name in classes:
        if class_sets.get(name) is not None:
            excluded |= class_sets[name]

    primary = per_class_conditions(classes, class_sets) if class_sets and spec.class_sets else []
    primary += shared_conditions(shared or (), class_sets) + explicit_conditions(explicit or {})
    primary += selector_conditions(classes, selector_sets or {})
    topk = topk_conditions(ranked or {}, spec.k_grid, (L, N))
    topk += topk_conditions(lowest_entropy or {}, spec.lowest_entropy_k, (L, N), kind="lowent")
    conds = [Condition("baseline", "baseline", torch.zeros(L, N, dtype=torch.bool))] + primary + topk
    names = [c.name for c in conds]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate condition names {sorted(dup)}")
    for c in primary + topk:
        excluded |= c.mask
    return conds + control_conditions(primary + topk, exists & ~excluded, site_neurons, spec)


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
