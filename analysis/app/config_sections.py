"""The objects the stages receive: each section of a loaded pipeline config is an instance of its schema's
type, made from the section parser (:mod:`analysis.app.config_schema`): one class per section whose
``fields`` (key → type hint, in declaration order, with ``__annotations__`` the same) are the parser's keys, so
the schema and the objects handed on are one and the same.

A section is a mapping of exactly its keys (``cfg.identify.top_rate`` or ``cfg["identify"]["top_rate"]``);
``**section`` hands it to its owner. A key that is not a field is an error naming the nearest field, read or
set (a typo in a stage fails, it never reads None; a notebook's ``cfg.stability.replicates = 2`` is a field,
``cfg.stability.replicate = 2`` is refused); no field can be removed. A key named like a ``dict`` method
(``tuning.values``) is read by subscription (``tu["values"]``): the attribute is the method. JSON, YAML, pickle
and ``copy.deepcopy`` treat it as the mapping it is (the stages' fingerprints and the run folders' records are
those of the plain values).

>>> Summary = section_type("summary", SECTIONS["summary"])
>>> s = Summary({"alpha": 0.05, "correction": "holm"})
>>> s.alpha, s["correction"], list(Summary.fields)
(0.05, 'holm', ['alpha', 'correction'])
>>> s.alpah
Traceback (most recent call last):
...
AttributeError: SummarySection has no key 'alpah' (did you mean 'alpha'?); its keys: ['alpha', 'correction']
>>> s.alpha = 0.1; s["alpha"]
0.1
>>> s["alfa"] = 0.1
Traceback (most recent call last):
...
KeyError: "SummarySection has no key 'alfa' (did you mean 'alpha'?); its keys: ['alpha', 'correction']"
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, ClassVar, Optional

import yaml
from jsonargparse import ArgumentParser

from analysis.app.config_schema import SECTIONS, section_parser


class Section(dict):
    """One section of a loaded pipeline config: a ``dict`` of exactly its schema's keys, read and set as
    attributes too.

    ``fields``: key → type hint of the section's schema (the section parser's keys, declaration order). A key
    outside ``fields`` is refused when read as an attribute or set (with the nearest field); a field cannot be
    removed (set it to its default instead), so a stage always finds every key."""

    section: ClassVar[str] = ""
    fields: ClassVar[dict[str, Any]] = {}

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        if key in self:
            return self[key]
        raise AttributeError(self._unknown(key))

    def _unknown(self, key: str) -> str:
        keys = list(type(self).fields) or list(self)
        near = difflib.get_close_matches(key, keys, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"{type(self).__name__} has no key {key!r}{hint}; its keys: {sorted(keys)}"

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in type(self).fields:
            raise KeyError(self._unknown(key))
        dict.__setitem__(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def _keeps_its_keys(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} keeps every key of its schema: set a key to its default instead")

    __delitem__ = __delattr__ = pop = popitem = clear = _keeps_its_keys  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and deep-copied as its class and keys
        return (_rebuild, (type(self).section, dict(self)))


#: section name → its type, made once per process (:func:`section_type`)
_TYPES: dict[str, type[Section]] = {}


def _fields(make: Callable[[], ArgumentParser]) -> dict[str, Any]:
    """key → type hint of a section parser (its arguments, without the help action)."""
    return {
        a.dest: a._typehint
        for a in make()._actions
        if getattr(a, "_typehint", None) is not None and not a.dest.endswith(".help")
    }


def section_type(section: str, make: Callable[[], ArgumentParser]) -> type[Section]:
    """The type of section ``section`` (``identify``, ``data.synthetic``, ``tasks.<task>``), its fields those
    of the parser ``make()``; one class per section and process."""
    if section not in _TYPES:
        parts = section.split(".")
        if parts[-1].startswith("<"):  # ``tasks.<task>``: the section of one task
            parts = [parts[-1].strip("<>")]
        name = "".join(w.capitalize() for p in parts for w in p.split("_")) + "Section"
        fields = _fields(make)
        _TYPES[section] = type(
            name,
            (Section,),
            {
                "section": section,
                "fields": fields,
                "__annotations__": dict(fields),
                "__doc__": f"The ``{section}`` section of a pipeline config: {', '.join(fields)}.",
                "__module__": __name__,
            },
        )
    return _TYPES[section]


def _rebuild(section: str, values: dict[str, Any]) -> Section:
    if section == PipelineConfig.section:
        return PipelineConfig(values)
    return section_type(section, section_parser(section))(values)


class PipelineConfig(Section):
    """A loaded pipeline config (:func:`analysis.app.config.load_config`): ``out``, ``seed``,
    ``description``, ``tasks`` (task → its ``tasks.<task>`` section), ``models`` (name → encoder spec) and one
    :class:`Section` per schema section (``cfg.identify``, ``cfg.trainer``, ...); ``config_path`` the file."""

    section = "pipeline"
    fields = {
        "description": Optional[str],
        "out": str,
        "seed": int,
        "tasks": dict[str, Section],
        "models": dict[str, dict[str, Any]],
        "_config_path": str,
        **{name: Section for name in SECTIONS},
    }

    @property
    def config_path(self) -> str:
        """The YAML file the config was read from."""
        return self["_config_path"]


def _represent(dumper: yaml.SafeDumper, data: Section) -> Optional[yaml.Node]:
    return dumper.represent_dict(dict(data))


# YAML writes a section as the mapping it is (the safe dumpers know only exact dicts)
yaml.add_multi_representer(Section, _represent, Dumper=yaml.SafeDumper)
yaml.add_multi_representer(Section, _represent, Dumper=yaml.Dumper)
