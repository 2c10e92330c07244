"""Pipeline config keys renamed from their owner's parameter names: the owners' names clash across sections
(``identify.mode`` vs ``ablation.mode``; ``ablation.strategy`` vs ``trainer.strategy``, the Lightning
strategy). The schema (:mod:`analysis.app.config_schema`) offers the new names, with the owner's type,
default and help; the old names are accepted for one release with a deprecation warning
(:func:`analysis.app.config_parse.upgrade_renamed`); the stages hand the owner its own names
(:func:`owner_kwargs`)."""

from __future__ import annotations

from typing import Any

RENAMED: dict[tuple[str, str], str] = {
    ("identify", "mode"): "semantics",
    ("ablation", "mode"): "replacement",
    ("ablation", "strategy"): "batching",
}


def owner_kwargs(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values of ``section`` under their owner's parameter names (the renamed keys mapped back).

    >>> owner_kwargs("ablation", {"replacement": "mean", "batching": "loop", "gain": 0.0})
    {'mode': 'mean', 'strategy': 'loop', 'gain': 0.0}
    """
    back = {new: old for (s, old), new in RENAMED.items() if s == section}
    return {back.get(k, k): v for k, v in values.items()}
