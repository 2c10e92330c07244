"""Matched random draws shared across sets, and the sequential Monte-Carlo stop (Besag–Clifford).

Vocabulary
----------
* A set's *size profile* is its number of neurons per site (:func:`size_profile`). A matched random draw
  has the same profile, drawn uniformly without replacement from one pool of neurons (every existing
  neuron that no tested set and no selection contains). So every set with the same profile has the same
  matched draws: one random condition yields the change of every class at once, and sets of equal
  profiles share it (:func:`draw_conditions` names draw ``d`` of profile ``P`` ``random:P:d``).
* Draw ``d`` of profile ``P`` depends only on (seed, ``P``, ``d``) (:func:`draw_seed`): the first ``r``
  draws are the same whatever the number of draws, so drawing can stop early without changing them, and a
  separate copy per set (``share_draws=False``) gives the very same masks.
* A draw *beats* a set on class ``c`` when its change of ``c``'s recall is <= the set's (ties count
  against the set). :class:`SequentialDraws` runs draws in rounds and stops drawing for a set once ``h``
  draws have beaten it on each of its target classes (after ``L`` draws, the Besag–Clifford p is ``h / L``);
  otherwise the set gets all its draws. :func:`matched_draws` says which random conditions are a set's
  matched draws: its profile's draws in draw order, up to where the set stopped.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "size_profile",
    "profile_name",
    "draw_seed",
    "profile_draw",
    "auto_random_draws",
    "matched_draws",
    "DrawSet",
    "SequentialDraws",
    "beats",
]


def size_profile(mask: Tensor) -> tuple[int, ...]:
    """Neurons per site of a mask ``[L, N]``.

    >>> size_profile(torch.tensor([[True, False, True], [False, False, False]]))
    (2, 0)
    """
    return tuple(int(v) for v in mask.sum(1).tolist())


def profile_name(profile: Sequence[int]) -> str:
    """The name of a profile in condition names: sizes joined by ``.`` after ``n``.

    >>> profile_name((0, 1, 0, 4))
    'n0.1.0.4'
    """
    return "n" + ".".join(str(int(v)) for v in profile)


def draw_seed(seed: int, profile: Sequence[int], draw: int) -> int:
    """Seed of draw ``draw`` of ``profile`` (CRC-32 of the three, the same in every process and run).

    >>> draw_seed(0, (1, 2), 3) == draw_seed(0, (1, 2), 3) != draw_seed(0, (1, 2), 4)
    True
    """
    return zlib.crc32(f"{int(seed)}|{profile_name(profile)}|{int(draw)}".encode())


def profile_draw(profile: Sequence[int], pool: Tensor, seed: int, draw: int, source: str = "draws") -> Tensor:
    """Draw ``draw`` of ``profile``: in every site ``l``, ``profile[l]`` neurons drawn uniformly without
    replacement from ``pool[l]`` (BoolTensor ``[L, N]``). Returns a mask ``[L, N]``; a site whose pool is
    too small is a ValueError naming ``source``."""
    if len(profile) != pool.shape[0]:
        raise ValueError(f"{source}: profile of {len(profile)} sites, pool of {pool.shape[0]}")
    g = torch.Generator().manual_seed(draw_seed(seed, profile, draw))
    m = torch.zeros_like(pool)
    for l, k in enumerate(profile):
        if not k:
            continue
        ids = pool[l].nonzero().flatten()
        if k > ids.numel():
            raise ValueError(
                f"{source}: layer {l} needs {k} random neurons but only {ids.numel()} are available "
                "after excluding selected and absent neurons"
            )
        m[l, ids[torch.randperm(ids.numel(), generator=g)[:k]]] = True
    return m


def auto_random_draws(tests: int, alpha: float) -> int:
    """The fewest draws R whose smallest attainable p, ``1 / (1 + R)``, passes a Holm (or Bonferroni)
    correction over ``tests`` tests at level ``alpha``: ``tests / (1 + R) < alpha``.

    >>> auto_random_draws(24, 0.05), auto_random_draws(1, 0.05), 24 / (1 + 480) < 0.05 <= 24 / 480
    (480, 20, True)
    """
    if tests < 1 or not 0 < alpha < 1:
        raise ValueError(f"auto_random_draws needs tests >= 1 and 0 < alpha < 1, got {tests}, {alpha}")
    r = max(0, math.floor(tests / alpha) - 1)
    while tests / (1 + r) >= alpha:  # exact in floating point whatever the rounding above
        r += 1
    return r


def _get(c: Any, key: str) -> Any:
    """``key`` of a condition: a :class:`analysis.ablation.Condition` or its JSON description."""
    return c.get(key) if isinstance(c, dict) else getattr(c, key, None)


def matched_draws(conditions: Sequence[Any], name: str) -> list[Any]:
    """The matched random draws of set ``name``, in draw order: the random conditions of its profile
    (``profile``), the first ``draws_used`` of them when the set stopped early. ``conditions``:
    :class:`analysis.ablation.Condition` objects or their descriptions (``ablation_conditions.json``);
    descriptions of older runs without profiles: the random conditions whose ``parent`` is ``name``.

    >>> cs = [dict(name="s", kind="class", profile="n1", draws_used=2)]
    >>> cs += [dict(name=f"random:n1:{d}", kind="random", profile="n1", draw=d) for d in (2, 0, 1)]
    >>> [c["name"] for c in matched_draws(cs, "s")]
    ['random:n1:0', 'random:n1:1']
    """
    found = [c for c in conditions if _get(c, "name") == name]
    if not found:
        raise ValueError(f"no condition {name!r}")
    s = found[0]
    prof = _get(s, "profile")
    if prof is None:
        mine = [c for c in conditions if _get(c, "kind") == "random" and _get(c, "parent") == name]
    else:
        mine = [c for c in conditions if _get(c, "kind") == "random" and _get(c, "profile") == prof]
    mine = sorted(mine, key=lambda c: int(_get(c, "draw")))
    used = _get(s, "draws_used")
    return mine if used is None else mine[: int(used)]


def beats(draw_correct: Tensor, set_correct: Tensor) -> Tensor:
    """BoolTensor ``[R, C]``: draw r beats the set on class c (its correct count, hence its change of
    c's recall, is <= the set's; ties count against the set). ``draw_correct`` ``[R, C]``, ``set_correct``
    ``[C]`` (integer counts of the same clips)."""
    return draw_correct <= set_correct[None, :]


@dataclass
class DrawSet:
    """A set tested against matched draws: its name, profile name, target class indices and the most
    draws it may get."""

    name: str
    profile: str
    targets: list[int]
    max_draws: int


class SequentialDraws:
    """Which draws to run next, round by round, and where each set stops.

    Round sizes per profile: ``2 h`` draws first, then as many as were drawn so far (so at most twice the
    draws the stopping sets needed), never beyond the largest ``max_draws`` of the profile's sets still
    drawing; ``h = None``: every draw in one round.

    >>> plan = SequentialDraws([DrawSet("s", "n1", [0], 50)], h=2)
    >>> plan.next_round()
    {'n1': range(0, 4)}
    >>> plan.update("n1", range(0, 4), torch.tensor([[3], [1], [0], [2]]), {"s": torch.tensor([1])})
    >>> plan.used, plan.next_round()
    ({'s': 3}, {})
    """

    def __init__(self, sets: Sequence[DrawSet], h: Optional[int]) -> None:
        if h is not None and h < 1:
            raise ValueError(f"SequentialDraws: h must be >= 1 or None, got {h}")
        self.sets = {s.name: s for s in sets if s.max_draws > 0}
        self.h = h
        self.issued = {s.profile: 0 for s in self.sets.values()}
        self.beaten = {name: [0] * len(s.targets) for name, s in self.sets.items()}
        #: set name → number of its profile's draws that are its matched draws (known once it stopped)
        self.used: dict[str, int] = {}

    def _drawing(self, profile: str) -> list[DrawSet]:
        return [s for s in self.sets.values() if s.profile == profile and s.name not in self.used]

    def next_round(self) -> dict[str, range]:
        """Profile → the draw numbers of the next round (empty dict: drawing is over)."""
        out = {}
        for prof, done in self.issued.items():
            active = self._drawing(prof)
            if not active:
                continue
            top = max(s.max_draws for s in active)
            size = top - done if self.h is None else (2 * self.h if done == 0 else done)
            if min(size, top - done) > 0:
                out[prof] = range(done, done + min(size, top - done))
        return out

    def update(self, profile: str, draws: range, draw_correct: Tensor, set_correct: dict[str, Tensor]) -> None:
        """Account for the draws ``draws`` of ``profile`` (their correct counts ``[len(draws), C]``, summed
        over every process) against each drawing set's counts ``[C]`` (``set_correct``)."""
        if draws.start != self.issued[profile]:
            raise ValueError(
                f"draws of {profile} must come in order: expected draw {self.issued[profile]}, got {draws.start}"
            )
        for s in self._drawing(profile):
            hit = beats(draw_correct[:, s.targets], set_correct[s.name][s.targets])  # [r, targets]
            for j, d in enumerate(draws):
                if d >= s.max_draws:
                    break
                counts = self.beaten[s.name]
                for t in range(len(s.targets)):
                    counts[t] += int(hit[j, t])
                if self.h is not None and all(c >= self.h for c in counts):
                    self.used[s.name] = d + 1
                    break
        self.issued[profile] = draws.stop
        for s in self._drawing(profile):
            if self.issued[profile] >= s.max_draws:
                self.used[s.name] = s.max_draws
