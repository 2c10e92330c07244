"""DrawRounds: the ablation's conditions run round by round (the sequential Monte-Carlo stop).

Round 1 is the Lightning test pass: every fixed condition (baseline, sets, index+1 controls) and the first
draws of each draw profile. After each round the processes sum that round's counts (one reduce), so every
process sees the same totals and :class:`analysis.draws.SequentialDraws` picks the same next draws; the
callback then runs them over the same test batches again. At the end the conditions that ran are put in a
fixed order (fixed conditions, then each profile's draws by draw number), independent of the rounds.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor

from analysis import ablation as A
from analysis import draws as D


class DrawRounds:
    """Conditions of each round and their counts.

    Args:
        conditions: every condition that may run (fixed ones and each profile's draws up to its most).
        classes: class names (index order).
        h: the sequential stop (None: every draw in round 1).
        max_draws: set name → the most draws it may get.
    """

    def __init__(
        self, conditions: Sequence[A.Condition], classes: Sequence[str], h: Optional[int], max_draws: dict[str, int]
    ) -> None:
        self.fixed = [c for c in conditions if c.kind != "random"]
        self.draws: dict[str, list[A.Condition]] = {}
        for c in conditions:
            if c.kind == "random":
                self.draws.setdefault(c.profile, []).append(c)
        for prof, ds in self.draws.items():
            if [c.draw for c in ds] != list(range(len(ds))):
                raise ValueError(f"draws of profile {prof} are not numbered 0..{len(ds) - 1}")
        index = {c: i for i, c in enumerate(classes)}
        self.sets = [
            D.DrawSet(c.name, c.profile, [index[t] for t in c.target], max_draws[c.name])
            for c in self.fixed
            if c.profile is not None
        ]
        self.plan = D.SequentialDraws(self.sets, h)
        self.round: list[A.Condition] = []
        self.round_draws: dict[str, range] = {}
        self.ran: list[A.Condition] = []
        self.correct: list[Tensor] = []  # per round, host, [K_round, C] summed over processes
        self.confusion: list[Tensor] = []
        self.n: Optional[Tensor] = None
        self.history: list[list[str]] = []  # the condition names of each round, in run order

    def next_round(self) -> list[A.Condition]:
        """The conditions of the next round (round 1: the fixed ones first, baseline at 0); [] when done."""
        self.round_draws = self.plan.next_round()
        first = not self.ran and not self.round
        self.round = (list(self.fixed) if first else []) + [
            c for prof, r in self.round_draws.items() for c in self.draws[prof][r.start : r.stop]
        ]
        return self.round

    def finish_round(self, correct: Tensor, confusion: Tensor, n: Optional[Tensor]) -> None:
        """Record the round's counts (summed over processes, on the host) and update the plan."""
        if n is not None:
            self.n = n
        self.history.append([c.name for c in self.round])
        self.ran += self.round
        self.correct.append(correct)
        self.confusion.append(confusion)
        row = {c.name: i for i, c in enumerate(self.ran)}
        every = torch.cat(self.correct)
        set_correct = {s.name: every[row[s.name]] for s in self.sets if s.name in row}
        for prof, r in self.round_draws.items():
            ids = [row[c.name] for c in self.draws[prof][r.start : r.stop]]
            self.plan.update(prof, r, every[ids], set_correct)
        self.round = []

    def run(self, score: Callable[[list[A.Condition]], tuple[Tensor, Tensor, Optional[Tensor]]]) -> None:
        """Further rounds until the plan stops: ``score(conditions)`` runs them over the test batches and
        returns their summed (correct, confusion, None) counts."""
        while self.next_round():
            self.finish_round(*score(self.round))

    def result(self) -> tuple[list[A.Condition], Tensor, Tensor, Tensor]:
        """(conditions in their fixed order with ``draws_used`` set, correct ``[K, C]``, n ``[C]``,
        confusion ``[K, C, C]``)."""
        for c in self.fixed:
            if c.profile is not None:
                c.draws_used = self.plan.used.get(c.name)
        order = {c.name: i for i, c in enumerate(self.ran)}
        ran = set(order)
        final = list(self.fixed) + [c for ds in self.draws.values() for c in ds if c.name in ran]
        idx = torch.tensor([order[c.name] for c in final], dtype=torch.long)
        return final, torch.cat(self.correct)[idx], self.n, torch.cat(self.confusion)[idx]


def replay_batches(trainer: Any, pl_module: Any, seen: dict[int, int], score: Callable[[Any, int, int], None]) -> None:
    """Call ``score(batch, batch_idx, dataloader_idx)`` on the test batches of round 1 again (the first
    ``seen[d]`` batches of each test dataloader ``d``, on the module's device), in eval mode without grad."""
    loaders = trainer.test_dataloaders
    loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
    was_training = pl_module.training
    pl_module.eval()
    try:
        with torch.no_grad():
            for d, loader in enumerate(loaders):
                for i, batch in enumerate(loader):
                    if i >= seen.get(d, 0):
                        break
                    score(move_data_to_device(batch, pl_module.device), i, d)
    finally:
        pl_module.train(was_training)
