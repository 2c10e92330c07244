"""The pipeline config as text, from its schema (:mod:`analysis.app.config`, the one home of every key, type
and default): the full config with defaults (``python -m analysis pipeline [--config FILE] --print_config``)
and the configs reference page ``docs/configs.md``, generated, never written by hand::

    python -m analysis.app.config_reference docs/configs.md     (make docs)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from jsonargparse import ArgumentParser

from analysis.app import config as C
from analysis.app.config_schema import NESTED_SECTIONS
from analysis.app.config_sections import section_type

#: What each nested section of the reference is (one entry per key of
#: :data:`~analysis.app.config_schema.NESTED_SECTIONS`: the reference refuses to build with one missing).
NESTED = {
    "data.synthetic": "synthetic EVAR tasks written into the output folder "
    "(:func:`~datamodules.synthetic.write_task`); absent = read real EVAR data",
    "data.soundfont": "EVAR tasks rendered from a General MIDI SoundFont into the output folder "
    "(:func:`~datamodules.soundfont.write_soundfont_task`); absent = read real EVAR data",
    "tasks.<task>": "per-task :class:`~datamodules.EVARDataModule` arguments and "
    ":class:`~analysis.app.config.TaskOptions`",
}
TOP_LEVEL = (
    ("out", "str", C.DEFAULT_OUT, "output folder of the run (``--out`` overrides it)"),
    ("seed", "int", 0, "seed of every stage (data order, probe, random ablation draws, bootstrap)"),
    ("description", "str", None, "free text, shown in the report"),
    ("tasks", "mapping", "—", "task name → its options (``tasks.<task>``); at least one"),
    (
        "models",
        "mapping",
        "—",
        "model name → ``class_path`` (an encoder of ``lightning_modules.encoders``) "
        "and ``init_args`` (checked against its signature); at least one",
    ),
)


@dataclass(frozen=True)
class Option:
    """One key of a section: its name, type, default and meaning."""

    key: str
    type: str
    default: Any
    help: str


def _type_name(hint: Any) -> str:
    """A type hint as a reader writes it (``Optional[list[PositiveInt]]``).

    >>> from typing import Literal, Optional
    >>> _type_name(Optional[list[int]]), _type_name(Literal["gain", "mean"])
    ('Optional[list[int]]', "Literal['gain', 'mean']")
    """
    text = hint.__name__ if isinstance(hint, type) and not getattr(hint, "__args__", None) else repr(hint)
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    return re.sub(r"\b(?:[a-z_][\w]*\.)+(?=[A-Za-z_]\w*)", "", text)


def options(make: Callable[[], ArgumentParser]) -> list[Option]:
    """The keys of a section parser, in declaration order (help texts from the owners' docstrings)."""
    out = []
    for a in make()._actions:
        hint = getattr(a, "_typehint", None)
        if hint is None or a.dest.endswith(".help"):
            continue
        out.append(Option(a.dest, _type_name(hint), C._plain(a.default), " ".join((a.help or "").split())))
    return out


def default_config() -> dict[str, Any]:
    """Every section with its defaults; ``tasks`` and ``models`` empty (they have none: name at least one)."""
    cfg: dict[str, Any] = {"description": None, "out": C.DEFAULT_OUT, "seed": 0, "tasks": {}, "models": {}}
    for section, make in C.SECTIONS.items():
        cfg[section] = {o.key: o.default for o in options(make)}
    return cfg


def config_yaml(path: Optional[str] = None, out: Optional[str] = None) -> str:
    """The full config of the YAML ``path`` with every default filled in, validated (:func:`load_config`), as
    YAML; without ``path`` the defaults of every section (:func:`default_config`)."""
    if path is None:
        head = (
            "# the defaults of every section; tasks and models have none (name at least one of each):\n"
            "# see docs/configs.md\n"
        )
        return head + yaml.safe_dump(default_config(), sort_keys=False, allow_unicode=True, width=120)
    cfg = C.load_config(path, out=out)
    head = f"# {path}, with every default filled in (validated)\n"
    return head + yaml.safe_dump(
        {k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=False, allow_unicode=True, width=120
    )


def _rst_to_md(text: str) -> str:
    text = re.sub(r":(?:func|class|meth|mod|data|attr):`~?([^`]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`").replace("|", "\\|")


def _default_md(value: Any) -> str:
    if isinstance(value, str) and value == "—":
        return value
    return "`" + yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip() + "`"


def section_owners() -> dict[str, str]:
    """Section → what it configures, from the table of :mod:`analysis.app.config`'s docstring."""
    lines = (C.__doc__ or "").splitlines()
    rules = [i for i, line in enumerate(lines) if re.fullmatch(r"=+\s+=+", line.strip())]
    table = lines[rules[0] + 1 : rules[-1]] if len(rules) >= 2 else []
    owners: dict[str, str] = {}
    key = None
    for line in table:
        m = re.match(r"``(\w+)``\s+(.*)", line)
        if m:
            key = m.group(1)
            owners[key] = m.group(2).strip()
        elif key and line.strip() and not line.startswith("="):
            owners[key] += " " + line.strip()
    return owners


def _table(rows: list[Option]) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{o.key}` | `{o.type}` | {_default_md(o.default)} | {_rst_to_md(o.help)} |" for o in rows]
    return lines


def markdown() -> str:
    """The configs reference page (``docs/configs.md``)."""
    owners = section_owners()
    lines = [
        "# Pipeline config reference",
        "",
        "<!-- generated by `python -m analysis.app.config_reference docs/configs.md` (make docs) from the schema "
        "in analysis/app/config.py; do not edit: tests/test_docs.py checks it is current -->",
        "",
        "A pipeline YAML (`configs/pipeline/*.yaml`, run with `python -m analysis pipeline --config FILE`) has the "
        "keys below; every section is the keyword arguments of the function or class it is handed to, so its "
        "keys, types and defaults come from that signature. Unknown keys, wrong types and values out of range "
        "are refused before any stage runs, with the file and the key path. "
        "`python -m analysis pipeline --config FILE --print_config` prints a config with every default filled in. "
        "In Python, `analysis.app.config.load_config(FILE)` returns the same config typed: a `PipelineConfig` "
        "whose sections are instances of the types named below (`cfg.identify.top_rate`), each holding exactly "
        "the keys of its table (a typo, read or set, is an error naming the nearest key).",
        "",
        "## Top level",
        "",
    ]
    lines += _table([Option(k, t, d, h) for k, t, d, h in TOP_LEVEL])
    for section, make in C.SECTIONS.items():
        owner = "Handed to: " + _rst_to_md(owners.get(section, ""))
        lines += ["", f"## `{section}`", "", f"{owner}. Type: `{section_type(section, make).__name__}`.", ""]
        lines += _table(options(make))
    missing = sorted(set(NESTED_SECTIONS) - set(NESTED))
    if missing:
        raise ValueError(f"config_reference.NESTED does not describe the nested sections {missing}")
    for key, make in NESTED_SECTIONS.items():
        what = NESTED[key]
        lines += ["", f"## `{key}`", "", f"{_rst_to_md(what)}. Type: `{section_type(key, make).__name__}`.", ""]
        lines += _table(options(make))
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m analysis.app.config_reference docs/configs.md", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(markdown(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
