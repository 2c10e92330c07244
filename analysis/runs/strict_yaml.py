"""The one YAML reader of aape: ``yaml.safe_load`` (no tags that build objects) that refuses a key given twice
in one mapping (``seed: 0`` then ``seed: 7`` would otherwise run silently with the last value), naming the
key and both lines. Used for pipeline configs, task definitions, report and top-rate tables, and (through
:func:`jsonargparse_loader`) the LightningCLI configs of ``train.py``."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import yaml

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError, ValueError):
    """A mapping of a YAML document gives the same key twice; the message names the source, the key and
    both lines."""


def _mappings(node: yaml.Node, seen: set[int]) -> Iterator[yaml.MappingNode]:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        yield node
        for k, v in node.value:
            yield from _mappings(k, seen)
            yield from _mappings(v, seen)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            yield from _mappings(v, seen)


def duplicate_keys(text: str) -> list[tuple[str, int, int]]:
    """``(key, first line, repeated line)`` (1-based) of every key given twice in one mapping of ``text``
    (merge keys ``<<`` excepted: overriding a merged key is what they are for); ``[]`` when the text is not
    YAML (then the loader reports that).

    >>> duplicate_keys("seed: 0\\nout: x\\nseed: 7\\n")
    [('seed', 1, 3)]
    >>> duplicate_keys("a: {b: 1, c: 2}\\nd: [{e: 1, e: 2}]\\n")
    [('e', 2, 2)]
    >>> duplicate_keys("base: &b {x: 1}\\nuse: {<<: *b, x: 2}\\n")
    []
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    out = []
    for m in _mappings(root, set()) if root is not None else ():
        first: dict[tuple[str, str], int] = {}
        for k, _ in m.value:
            if k.tag == _MERGE or not isinstance(k, yaml.ScalarNode):
                continue
            line = k.start_mark.line + 1
            if (k.tag, k.value) in first:
                out.append((k.value, first[(k.tag, k.value)], line))
            else:
                first[(k.tag, k.value)] = line
    return out


def check_unique_keys(text: str, source: str) -> None:
    """Raise :class:`DuplicateKeyError` naming ``source``, the key and both lines when ``text`` repeats a
    key in one mapping."""
    dups = duplicate_keys(text)
    if dups:
        key, a, b = dups[0]
        more = f" (and {len(dups) - 1} more repeated key{'s' if len(dups) > 2 else ''})" if len(dups) > 1 else ""
        raise DuplicateKeyError(
            f"{source}: duplicate key {key!r} at line {b} (first given at line {a}); a key may "
            f"appear once per mapping: delete one of them{more}"
        )


def safe_load(text: str, source: str = "<string>") -> Any:
    """``yaml.safe_load(text)`` after :func:`check_unique_keys`; every error is a ``yaml.YAMLError``."""
    check_unique_keys(text, source)
    return yaml.safe_load(text)


def jsonargparse_loader(original: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonargparse's YAML value loader ``original`` with :func:`check_unique_keys` first (for
    ``jsonargparse.set_loader("yaml", ...)``: LightningCLI configs of ``train.py``)."""

    def load(text: str) -> Any:
        check_unique_keys(text, "config")
        return original(text)

    load.refuses_duplicate_keys = True  # type: ignore[attr-defined]
    return load
