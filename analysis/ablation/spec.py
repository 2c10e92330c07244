"""What an ablation run ablates: :class:`ConditionSpec`, the one home of the options that define its
condition list (the arguments of the same names of :class:`callbacks.AblationCallback`, handed to
:func:`analysis.runs.conditions.conditions_from_run` and :func:`analysis.ablation.build_conditions` as
one value), and :class:`NeuronList`, an explicit neuron list of the study's format.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional, Sequence, Union

#: ``random_draws`` value asking for the fewest draws that can pass the corrected level
#: (:func:`analysis.draws.auto_random_draws`), resolved before the conditions are built.
AUTO_DRAWS = "auto"


@dataclass
class NeuronList:
    """An explicit neuron list (the study's format).

    Attributes:
        name: condition name (e.g. ``cremad_ang_hap``).
        neurons: ``[[layer, neuron], ...]``, layer = index into the encoder's ``neuron_sites``.
        targets: class names the list is meant to affect (its on-target classes).
    """

    name: str
    neurons: list[list[int]]
    targets: list[str] = field(default_factory=list)


@dataclass
class ConditionSpec:
    """The options of an ablation run's condition list (checked and normalised on construction; a bad
    value is a ``ValueError`` naming the option).

    Attributes:
        class_sets: one ``class:<c>`` condition per class with its AAPE set (``neurons.pt``); False: the
            class sets only feed shared sets, top-k rankings and the exclusion from random draws.
        neuron_lists: explicit lists (:class:`NeuronList` or its dict), one ``explicit`` condition each.
        shared: groups of class names whose AAPE sets are intersected (``shared:A&B``).
        k_grid: top-k sizes of each class's AAPE ranking (sorted, unique, each >= 1; empty: no k-curve).
        topk_classes: classes of the k-grid and of the lowest-entropy conditions (None: every class).
        lowest_entropy_k: k values (each in ``k_grid``) of the threshold-free ``lowent:<c>:<k>`` conditions.
        lowest_entropy_draws: matched random draws per lowest-entropy condition (None: ``random_draws``).
        random_draws: matched random draws per set (>= 0), or :data:`AUTO_DRAWS` until resolved
            (:meth:`with_draws`).
        random_for_topk: also draw matched random sets for each top-k condition.
        index_plus_one: add the study authors' index+1 control of every class/explicit/shared set.
        seed: base seed of the random draws.
        class_aliases: names used in ``neuron_lists`` / ``shared`` / ``topk_classes`` → the task's classes.
        share_draws: sets with the same neurons per site share their matched draws.
        selectors: baseline selectors (:mod:`analysis.selectors`) whose class sets are ablated too.

    >>> ConditionSpec(k_grid=[4, 1, 4], lowest_entropy_k=[4]).k_grid
    [1, 4]
    >>> ConditionSpec(lowest_entropy_k=[2])
    Traceback (most recent call last):
    ...
    ValueError: lowest_entropy_k [2] not in k_grid []
    """

    class_sets: bool = True
    neuron_lists: Sequence[NeuronList] = ()
    shared: Sequence[Sequence[str]] = ()
    k_grid: Sequence[int] = ()
    topk_classes: Optional[Sequence[str]] = None
    lowest_entropy_k: Sequence[int] = ()
    lowest_entropy_draws: Optional[int] = None
    random_draws: Union[int, Literal["auto"]] = 10
    random_for_topk: bool = True
    index_plus_one: bool = False
    seed: int = 0
    class_aliases: Optional[dict[str, str]] = None
    share_draws: bool = True
    selectors: Sequence[str] = ()

    def __post_init__(self) -> None:
        d = self.random_draws
        if d != AUTO_DRAWS and (isinstance(d, str) or int(d) < 0):
            raise ValueError(f"random_draws must be >= 0 or 'auto', got {d!r}")
        if any(int(k) < 1 for k in (self.k_grid or [])):
            raise ValueError(f"k_grid sizes must be >= 1, got {self.k_grid}")
        self.k_grid = sorted({int(k) for k in (self.k_grid or [])})
        self.lowest_entropy_k = sorted({int(k) for k in (self.lowest_entropy_k or [])})
        bad = [k for k in self.lowest_entropy_k if k not in self.k_grid]
        if bad:
            raise ValueError(f"lowest_entropy_k {bad} not in k_grid {self.k_grid}")
        if self.lowest_entropy_draws is not None and self.lowest_entropy_draws < 0:
            raise ValueError(f"lowest_entropy_draws must be >= 0, got {self.lowest_entropy_draws}")
        self.neuron_lists = [nl if isinstance(nl, NeuronList) else NeuronList(**nl) for nl in (self.neuron_lists or [])]
        self.shared = [list(s) for s in (self.shared or [])]
        self.random_draws = d if d == AUTO_DRAWS else int(d)
        self.seed = int(self.seed)
        self.class_aliases = dict(self.class_aliases or {})
        self.share_draws = bool(self.share_draws)
        self.selectors = list(dict.fromkeys(self.selectors or []))

    def with_draws(self, random_draws: int) -> "ConditionSpec":
        """This spec with ``random_draws`` set (e.g. ``auto`` resolved to a count)."""
        return replace(self, random_draws=random_draws)

    def draws(self) -> int:
        """``random_draws`` as a count; ``auto`` is an error (resolve it with :meth:`with_draws` first)."""
        if self.random_draws == AUTO_DRAWS:
            raise ValueError("random_draws 'auto' must be resolved to a count before the conditions are built")
        return int(self.random_draws)

    def draws_of(self, kind: str) -> int:
        """Matched random draws of a set of ``kind`` (``lowest_entropy_draws`` for ``lowent`` when given)."""
        if kind == "lowent" and self.lowest_entropy_draws is not None:
            return int(self.lowest_entropy_draws)
        return self.draws()
