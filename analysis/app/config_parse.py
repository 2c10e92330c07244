"""Reading one section of a pipeline config: its parser's types and defaults applied, unknown keys refused
with the nearest valid key, renamed keys upgraded with a deprecation warning, and jsonargparse's and the
owners' errors turned into one line naming the file and the key path (``tasks.cremad.top_rat``)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from jsonargparse import ArgumentParser, Namespace

from analysis.app.config_renames import RENAMED


class PipelineError(RuntimeError):
    """A stage failed or the config is invalid; the message names the stage / file and key."""


def unknown_keys(path: Path, where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse keys of ``given`` not in ``allowed``, naming each with the nearest valid key.

    >>> unknown_keys(Path("c.yaml"), "tasks.t", ["top_rat"], ["top_rate", "fold"])
    Traceback (most recent call last):
    ...
    analysis.app.config_parse.PipelineError: c.yaml: unknown key(s) ['top_rat'] in 'tasks.t' (did you mean 'top_rate' for 'top_rat'?); allowed: ['fold', 'top_rate']
    """
    allowed = sorted(set(allowed))
    unknown = sorted(set(given) - set(allowed))
    if not unknown:
        return
    near = [(k, difflib.get_close_matches(k, allowed, n=1)) for k in unknown]
    hint = ", ".join(f"{m[0]!r} for {k!r}" for k, m in near if m)
    where = f" in '{where}'" if where else ""
    raise PipelineError(
        f"{path}: unknown key(s) {unknown}{where}"
        + (f" (did you mean {hint}?)" if hint else "")
        + f"; allowed: {allowed}"
    )


def upgrade_renamed(value: dict[str, Any], path: Path, section: str) -> dict[str, Any]:
    """``value`` with the old names of :data:`~analysis.app.config_renames.RENAMED` keys of ``section``
    replaced by the new ones (a ``FutureWarning`` naming the file, the old and the new key); both names
    given is an error."""
    out = dict(value)
    for (s, old), new in RENAMED.items():
        if s != section or old not in out:
            continue
        if new in out:
            raise PipelineError(
                f"{path}: {section}.{old} and {section}.{new} are both given: '{old}' is the deprecated old "
                f"name of '{new}'; keep only {section}.{new}"
            )
        warnings.warn(
            f"{path}: '{section}.{old}' is deprecated and will be removed in the next release: "
            f"rename it to '{section}.{new}'",
            FutureWarning,
            stacklevel=2,
        )
        out[new] = out.pop(old)
    return out


def _init_params(cls: type) -> list[str]:
    return [n for n in inspect.signature(cls.__init__).parameters if n != "self"]


def _plain(x: Any) -> Any:
    """Namespaces → dicts, tuples → lists, restricted numbers → int/float (the config as it would be
    written in YAML)."""
    if isinstance(x, Namespace):
        x = x.as_dict()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if k != "__path__"}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, int) and not isinstance(x, bool):
        return int(x)  # jsonargparse's PositiveInt & co. are int subclasses: keep plain numbers
    if isinstance(x, float):
        return float(x)
    return x


def _accepted(class_path: str) -> list[str]:
    """Argument names of the class ``class_path`` (dataclass fields or ``__init__`` parameters)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return []
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return _init_params(cls)


def _jsonargparse_problem(message: str, value: dict[str, Any]) -> tuple[Optional[str], str]:
    """(key path, problem) from a jsonargparse error: the failing key (with the list index of a nested
    entry) and what is wrong, without the noise of ``Optional``'s NoneType alternative."""
    msg = " ".join(message.split())
    m = re.search(r'Parser key "([^"]+)":\s*(.*)', msg)
    if not m:
        return None, msg
    key, text = m.group(1), m.group(2)
    opt = re.search(r"class_path '([\w.]+)': Option '([^']+)' is not accepted", text)
    if opt:
        entry = value.get(key)
        if isinstance(entry, list):
            idx = next((i for i, e in enumerate(entry) if isinstance(e, dict) and opt.group(2) in e), None)
            key = f"{key}[{idx}]" if idx is not None else key
        elif isinstance(entry, dict) and isinstance(entry.get("init_args"), dict):
            key = f"{key}.init_args"
        accepted = _accepted(opt.group(1))
        return key, (
            f"unknown key {opt.group(2)!r}"
            + (f"; {opt.group(1).rpartition('.')[2]} accepts {accepted}" if accepted else "")
        )
    nested = re.search(r"class_path '[\w.]+': (Parser key \"[^\"]+\":.*)", text)
    if nested and isinstance(value.get(key), dict):
        sub_key, sub_text = _jsonargparse_problem(nested.group(1), dict(value[key].get("init_args") or {}))
        return f"{key}.init_args.{sub_key}", sub_text
    if "Errors:" in text:
        errors = [e.strip() for e in text.split("Errors:", 1)[1].split(" - ") if e.strip()]
        errors = [e for e in errors if "NoneType" not in e]
        text = "; ".join(dict.fromkeys(errors)) or text
    text = re.sub(r"\s*Given value type:.*$", "", text)
    text = re.sub(r"\.?\s*Got value:.*?(?=;|$)", "", text)
    if key in value:
        text += f" (got {value[key]!r})"
    return key, text


def _parse(make: Callable[[], ArgumentParser], value: Any, path: Path, key: str) -> dict[str, Any]:
    """Validate the mapping at ``key`` of the file ``path`` with its parser; defaults filled in. Errors
    name the file and the key path."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise PipelineError(f"{path}: {key} must be a mapping, got {type(value).__name__} {value!r}")
    value = upgrade_renamed(value, path, key)
    parser = make()
    unknown_keys(path, key, value, set(parser.get_defaults().as_dict()) - {"__path__"})
    try:
        ns = parser.parse_object(value)
    except Exception as e:  # jsonargparse's ArgumentError / TypeError: say where, keep its message
        sub, problem = _jsonargparse_problem(str(e), value)
        raise PipelineError(f"{path}: {key}.{sub}: {problem}" if sub else f"{path}: {key}: {problem}") from e
    return _plain(ns)


def _owner_check(path: Path, where: str, values: dict[str, Any], check: Callable[[], Any]) -> Any:
    """Run an owner's own argument check; its ValueError/TypeError becomes a PipelineError naming the file
    and the key path (``where`` plus the argument its message starts with, when that is a key of ``values``)."""
    try:
        return check()
    except (ValueError, TypeError) as e:
        msg = " ".join(str(e).split())
        m = re.match(r"(?:\w+\s*:\s*)?(?:Unknown\s+(?:token policy\s+)?)?['\"]?(\w+)", msg)
        sub = m.group(1) if m and m.group(1) in values else None
        raise PipelineError(f"{path}: {where}.{sub}: {msg}" if sub else f"{path}: {where}: {msg}") from e
