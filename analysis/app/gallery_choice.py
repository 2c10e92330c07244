"""Which neurons a gallery shows (``neurons``: ``class``, ``selected`` and/or ``layer:index`` entries; see
:mod:`analysis.app.gallery`), resolved against a run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from analysis.aape import entropy, neurons_to_masks, normalise
from analysis.gallery import parse_neuron
from analysis.runs.layout import NEURONS_CSV, NEURONS_PT
from analysis.runs.read import Run, read_neurons, read_ranking

#: Neuron sets understood by ``neurons`` besides explicit ``layer:index`` entries.
NEURON_SETS = ("class", "selected")


@dataclass
class Choice:
    """The neurons of a gallery: ``neurons`` (layer, index) in display order and ``groups`` (title, members)."""

    neurons: list[tuple[int, int]]
    groups: list[tuple[str, list[tuple[int, int]]]]
    assigned: dict[tuple[int, int], list[str]] = field(default_factory=dict)


def choose_neurons(run: Run, neurons: Sequence[str], per_class: Optional[int] = None) -> Choice:
    """Resolve ``neurons`` (see module docstring) against the run folder."""
    L, N, C = run.over_zero.shape
    ent = entropy(normalise(run.over_zero))  # [L, N]
    order = lambda ids: sorted(ids, key=lambda x: (float(ent[x]), x))  # noqa: E731 - lowest entropy first
    assigned: dict[tuple[int, int], list[str]] = {}
    if (run.path / NEURONS_PT).is_file():
        masks = neurons_to_masks(read_neurons(run.path, C, L), C, (L, N))  # [C, L, N]
        for c, l, n in masks.nonzero().tolist():
            assigned.setdefault((l, n), []).append(run.classes[c])
    groups: list[tuple[str, list[tuple[int, int]]]] = []
    explicit: list[tuple[int, int]] = []
    for spec in neurons:
        if spec == "class":
            if not (run.path / NEURONS_PT).is_file():
                raise FileNotFoundError(
                    f"{run.path / NEURONS_PT}: not found; run `python -m analysis identify "
                    f"--run {run.path}` first (or name neurons as layer:index)"
                )
            for cls in run.classes:
                members = order([k for k, v in assigned.items() if cls in v])
                shown = members[:per_class] if per_class is not None else members
                more = f", the {len(shown)} of lowest entropy shown" if len(shown) < len(members) else ""
                groups.append((f"class {cls}: {len(members)} neuron{'s' if len(members) != 1 else ''}{more}", shown))
        elif spec == "selected":
            ranks = read_ranking(run.path)
            groups.append((f"selected by entropy ({NEURONS_CSV}): {len(ranks)}", sorted(ranks, key=ranks.get)))
        else:
            try:
                l, n = parse_neuron(spec)
            except ValueError:
                raise ValueError(
                    f"neurons: {spec!r} is neither {' nor '.join(NEURON_SETS)} nor layer:index (e.g. 3:17)"
                ) from None
            if not (0 <= l < L and 0 <= n < run.site_neurons[l]):
                raise ValueError(f"neuron {spec}: {run.path} has sites 0..{L - 1} with {run.site_neurons} neurons")
            explicit.append((l, n))
    if explicit:
        groups.append(("requested neurons", list(dict.fromkeys(explicit))))
    seen = list(dict.fromkeys(k for _, members in groups for k in members))
    return Choice(neurons=seen, groups=groups, assigned=assigned)
