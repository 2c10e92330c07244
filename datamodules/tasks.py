"""Task table of the EVAR on-disk format and ways to add tasks.

A task is described by a :class:`TaskSpec`: its clip length ``unit_sec``, how many cross-validation
folds it has (0 = the metadata CSV carries a ``split`` column), the audio ``folder`` under
``work/<sr_dir>/`` and whether it is multi-label. Tasks are looked up, in this order, in

1. an explicit definition given by the caller (``EVARDataModule(task_def=...)``: a dict, e.g. inline
   in a data YAML config, or the path of a YAML file holding such a dict);
2. tasks registered at run time with :func:`register_task`;
3. the study's task table :data:`TASKS` (esc50, us8k, gtzan, cremad, cremad_gender, vc1, voxforge,
   surge, nsynth, nspitch, nsvelocity, spcv2, fsd50k, as20k, and the study's subsets vc1_gender_nationality,
   voxforge_balanced, nspitch_subset, nsynth_subset, whose CSVs ``python -m analysis tasks build`` writes);
4. a YAML file ``<evar_root>/evar/metadata/<task>.yaml`` next to the metadata CSV (the synthetic task
   writer writes one).

A task name found nowhere is an error that lists the known tasks.

Task YAML keys (all optional except ``unit_sec``): ``name``, ``unit_sec`` (float, seconds),
``folds`` (int, 0 = use the ``split`` column), ``folder`` (audio folder under ``work/<sr_dir>/``,
default: the task name), ``metadata`` (path of the metadata CSV; relative paths are resolved against
the EVAR root; default ``evar/metadata/<task>.csv``), ``multilabel`` (bool), ``description``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from analysis.runs import strict_yaml

__all__ = [
    "TaskSpec",
    "TASKS",
    "SR_DIRS",
    "UnknownTaskError",
    "sr_dir",
    "register_task",
    "task_from_dict",
    "load_task_yaml",
    "get_task",
    "known_tasks",
]


@dataclass(frozen=True)
class TaskSpec:
    """Facts about one EVAR-format task.

    Attributes:
        name: task name (metadata file stem ``<name>.csv`` unless ``metadata`` is given).
        unit_sec: clip length in seconds; clips are cropped / zero-padded to
            ``int(sample_rate * unit_sec)`` samples.
        folds: number of cross-validation folds (0: the CSV has a ``split`` column).
        folder: audio folder under ``work/<sr_dir>/`` (``None``: the task name).
        metadata: metadata CSV path (``None``: ``evar/metadata/<name>.csv`` under the EVAR root;
            relative paths are resolved against the EVAR root).
        multilabel: labels are comma-joined class names (also detected from the CSV itself).
        description: free text.
    """

    name: str
    unit_sec: float
    folds: int = 0
    folder: Optional[str] = None
    metadata: Optional[str] = None
    multilabel: bool = False
    description: str = ""

    @property
    def audio_folder(self) -> str:
        """Folder under ``work/<sr_dir>/`` holding the task's audio files."""
        return self.folder or self.name

    def metadata_path(self, evar_root: Union[str, os.PathLike]) -> Path:
        """Absolute path of the metadata CSV for an EVAR root."""
        if self.metadata is None:
            return Path(evar_root) / "evar" / "metadata" / f"{self.name}.csv"
        p = Path(os.path.expanduser(self.metadata))
        return p if p.is_absolute() else Path(evar_root) / p


def _t(
    name: str,
    unit_sec: float,
    folds: int = 0,
    folder: Optional[str] = None,
    multilabel: bool = False,
    description: str = "",
) -> TaskSpec:
    return TaskSpec(
        name=name, unit_sec=unit_sec, folds=folds, folder=folder, multilabel=multilabel, description=description
    )


#: The study's tasks. Clip lengths follow EVAR's task configs.
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _t("esc50", 5.0, folds=5, description="ESC-50 environmental sounds, 5 folds"),
        _t("us8k", 4.0, folds=10, description="UrbanSound8K, 10 folds"),
        _t("gtzan", 30.0, description="GTZAN music genres"),
        _t("cremad", 2.5, description="CREMA-D speech emotion"),
        _t("cremad_gender", 2.5, folder="cremad", description="CREMA-D speaker gender (Male/Female)"),
        _t("vc1", 8.2, description="VoxCeleb1 speaker identification"),
        _t("voxforge", 5.8, description="VoxForge language identification"),
        _t("surge", 4.0, description="Surge synthesizer tones, pitch labels"),
        _t("nsynth", 4.0, description="NSynth instrument family"),
        _t("nspitch", 4.0, folder="nsynth", description="NSynth pitch (MIDI number labels)"),
        _t("nsvelocity", 4.0, folder="nsynth", description="NSynth velocity"),
        _t("spcv2", 1.0, description="Speech Commands V2"),
        _t("fsd50k", 7.6358, multilabel=True, description="FSD50K, multi-label"),
        _t("as20k", 10.0, folder="as", multilabel=True, description="AudioSet balanced (20k), multi-label"),
        # The study's subsets: metadata written by `python -m analysis tasks build <name>`
        # (datamodules/study_tasks.py) next to the source task's CSV; audio of the source task's folder.
        _t("vc1_gender_nationality", 8.2, folder="vc1", description="VoxCeleb1 gender x nationality (study subset)"),
        _t("voxforge_balanced", 5.8, folder="voxforge", description="VoxForge, balanced over languages (study subset)"),
        _t(
            "nspitch_subset",
            4.0,
            folder="nsynth",
            description="NSynth pitch on the piano range, MIDI labels (study subset; midi_to_octave: 9 octaves)",
        ),
        _t(
            "nsynth_subset",
            4.0,
            folder="nsynth",
            description="NSynth instrument family on the clips of nspitch_subset (study subset)",
        ),
    ]
}

_REGISTERED: dict[str, TaskSpec] = {}

#: Model sample rate (Hz) -> folder name under ``<evar_root>/work/``.
SR_DIRS: dict[int, str] = {16000: "16k", 22000: "22k", 32000: "32k", 44100: "44k", 48000: "48k"}


class UnknownTaskError(KeyError):
    """A task name that is neither in the table, registered, nor defined by a YAML file."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def sr_dir(sample_rate: int) -> str:
    """Folder name under ``work/`` for a model sample rate: 16000 -> ``"16k"`` (see :data:`SR_DIRS`)."""
    try:
        return SR_DIRS[int(sample_rate)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(
            f"No EVAR audio folder for sample rate {sample_rate!r}; known rates: "
            + ", ".join(f"{k} -> work/{v}" for k, v in SR_DIRS.items())
        ) from None


_KEYS = {f.name for f in dataclasses.fields(TaskSpec)}


def task_from_dict(d: Mapping[str, Any], name: Optional[str] = None, source: str = "task definition") -> TaskSpec:
    """Build a :class:`TaskSpec` from a mapping (keys as in the module docstring).

    ``name`` fills in a missing ``name`` key. ``source`` names where ``d`` came from in error messages.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{source}: expected a mapping of task fields, got {type(d).__name__}")
    unknown = set(d) - _KEYS
    if unknown:
        raise ValueError(f"{source}: unknown task field(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    fields = dict(d)
    fields.setdefault("name", name)
    if not fields.get("name"):
        raise ValueError(f"{source}: task definition has no 'name'")
    if name is not None and fields["name"] != name:
        raise ValueError(f"{source}: defines task {fields['name']!r} but task {name!r} was requested")
    if "unit_sec" not in fields:
        raise ValueError(f"{source}: task {fields['name']!r} has no 'unit_sec' (clip length in seconds)")
    try:
        unit_sec = float(fields["unit_sec"])
    except (TypeError, ValueError):
        raise ValueError(f"{source}: unit_sec must be a number, got {fields['unit_sec']!r}") from None
    if not unit_sec > 0:
        raise ValueError(f"{source}: unit_sec must be > 0, got {unit_sec}")
    folds = fields.get("folds") or 0
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0:
        raise ValueError(f"{source}: folds must be an integer >= 0, got {fields.get('folds')!r}")
    return TaskSpec(
        name=str(fields["name"]),
        unit_sec=unit_sec,
        folds=folds,
        folder=None if fields.get("folder") is None else str(fields["folder"]),
        metadata=None if fields.get("metadata") is None else str(fields["metadata"]),
        multilabel=bool(fields.get("multilabel", False)),
        description=str(fields.get("description") or ""),
    )


def load_task_yaml(path: Union[str, os.PathLike], name: Optional[str] = None) -> TaskSpec:
    """Read a task definition YAML file (a mapping of task fields)."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:
            d = strict_yaml.safe_load(f.read(), str(p))
    except FileNotFoundError:
        raise FileNotFoundError(f"Task definition file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"Task definition file {p} is not valid YAML: {e}") from None
    return task_from_dict(d or {}, name=name, source=str(p))


def register_task(spec: TaskSpec, overwrite: bool = False) -> TaskSpec:
    """Register a task for this process (e.g. from a YAML file read with :func:`load_task_yaml`)."""
    if not overwrite and spec.name in _REGISTERED and _REGISTERED[spec.name] != spec:
        raise ValueError(f"Task {spec.name!r} is already registered with a different definition")
    _REGISTERED[spec.name] = spec
    return spec


def known_tasks() -> list[str]:
    """Names of the tasks in the table and registered ones (not YAML files on disk)."""
    return sorted(set(TASKS) | set(_REGISTERED))


def get_task(
    name: str,
    evar_root: Union[str, os.PathLike, None] = None,
    task_def: Union[Mapping[str, Any], str, os.PathLike, None] = None,
) -> TaskSpec:
    """Look up a task (order in the module docstring).

    Args:
        name: task name.
        evar_root: EVAR root, to find ``evar/metadata/<name>.yaml``.
        task_def: an explicit definition: mapping of task fields or path of a YAML file. Fields of a
            mapping that omits ``unit_sec`` are laid over the table entry of ``name`` (so
            ``{"metadata": "my.csv"}`` re-points a known task to another CSV).
    Raises:
        UnknownTaskError: when the task is defined nowhere (the message lists the known tasks).
    """
    if task_def is not None:
        if isinstance(task_def, (str, os.PathLike)):
            return load_task_yaml(task_def, name=name)
        base = _REGISTERED.get(name) or TASKS.get(name)
        if base is not None and "unit_sec" not in task_def:
            merged = {k: v for k, v in dataclasses.asdict(base).items()}
            merged.update(task_def)
            return task_from_dict(merged, name=name, source=f"task_def of {name!r}")
        return task_from_dict(task_def, name=name, source=f"task_def of {name!r}")
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in TASKS:
        return TASKS[name]
    searched = ""
    if evar_root is not None:
        y = Path(evar_root) / "evar" / "metadata" / f"{name}.yaml"
        if y.is_file():
            return load_task_yaml(y, name=name)
        searched = f" and no task definition file {y}"
    raise UnknownTaskError(
        f"Unknown task {name!r}: not in the task table{searched}. Known tasks: {', '.join(known_tasks())}. "
        f"Define a new task with task_def (unit_sec, folds, folder, metadata, multilabel) or a YAML file "
        f"<evar_root>/evar/metadata/{name}.yaml."
    )
