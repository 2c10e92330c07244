"""The ablation condition: one way of running the encoder (a name, a kind, its targets and its mask
``[L, N]``); the vocabulary is in :mod:`analysis.ablation`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor

KINDS = ("baseline", "class", "explicit", "shared", "random", "index_plus_one", "topk", "lowent", "selector")
#: Kinds ranked by k (a curve over the k-grid); they get no index+1 control.
RANKED_KINDS = ("topk", "lowent")


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
