"""The pipeline config: its schema, ``${VAR}`` expansion and validation.

A pipeline YAML has the top-level keys of :data:`SECTIONS` plus ``out``, ``seed``, ``description``,
``tasks`` and ``models``. Each section is the keyword arguments of the function or class it is handed to,
so its keys, types and defaults have exactly one owner, that signature:

=============  ==================================================================================
``data``       shared :class:`~datamodules.EVARDataModule` arguments (``evar_root``, ``batch_size``,
               ``num_workers``, ...), ``synthetic`` (:func:`~datamodules.synthetic.write_task`) or
               ``soundfont`` (:func:`~datamodules.soundfont.write_soundfont_task`)
``tasks``      task → per-task :class:`~datamodules.EVARDataModule` arguments (``fold``, ``label_map``,
               ``task_def``, ...) and :class:`TaskOptions` (``top_rate``, ``evar_task``, ablation lists)
``models``     name → ``class_path`` / ``init_args`` of an encoder (checked against its signature)
``trainer``    :class:`TrainerOptions`
``stats``      :class:`~callbacks.ActivationStatsCallback` (``tokens``, ``level``) + ``identify_splits``
               (:data:`IDENTIFY_ALL` = every clip of the task, a list of splits, or null)
``identify``   :func:`~analysis.app.identify.identify_run`
``report``     :class:`~analysis.app.report.ReportSpec`
``stability``  :func:`~analysis.app.stability.stability_run` + ``enabled``
``probe``      :func:`~analysis.app.probe.fit_seeds`
``ablation``   :class:`~callbacks.AblationCallback` + ``batch_size``
``gallery``    :func:`~analysis.app.gallery.build_gallery` + ``enabled``
``summary``    :func:`~analysis.app.summary.write_summary` (``alpha``, ``correction``)
``sae``        :class:`~analysis.app.sae.SAEPipelineOptions` + :func:`~analysis.app.sae.train_sae`
``tuning``     :class:`~analysis.app.tuning.TuningOptions` (stimulus dimensions of the tuning curves)
``steering``   :class:`~analysis.app.tuning.SteeringOptions` (gain grid on each class set)
=============  ==================================================================================

Validation happens in :func:`load_config`, before any stage runs, and every error names the file and the
key path (``tasks.cremad.top_rat``):

1. types, from the signatures, through jsonargparse (the machinery of LightningCLI): unknown keys at every
   level (also inside nested values such as ``neuron_lists`` entries), wrong types (a string where a list
   is expected), counts (``PositiveInt`` / ``NonNegativeInt`` annotations), enumerations (``Literal``);
2. the rules each owner states for its own arguments, called with the config's values
   (:func:`analysis.aape.check_rates`: ``top_rate`` in (0, 1], ``filter_rate`` and
   ``activation_bar_ratio`` in (0, 1); :func:`~analysis.app.probe.check_seeds`; the constructors of
   :class:`~datamodules.EVARDataModule`, :class:`~callbacks.AblationCallback` and
   :class:`~callbacks.ActivationStatsCallback`; :func:`~datamodules.synthetic.check_task_args`;
   task definitions and fold ranges);
3. references between sections (report figures name tasks of the config).

Unset ``${VAR}`` is an error too. Checks that need the data (class names, the metadata checks) run in
:meth:`analysis.app.pipeline.Pipeline.check_data` before the first stage.

Renamed keys (the old names, those of the owners' parameters, are accepted for one release with a
``FutureWarning`` naming the file, the old and the new key; both given is an error):
``identify.mode`` → ``identify.semantics``, ``ablation.mode`` → ``ablation.replacement``,
``ablation.strategy`` → ``ablation.batching`` (:data:`~analysis.app.config_renames.RENAMED`; the stages
hand the owners their own names through :func:`~analysis.app.config_renames.owner_kwargs`).

The loaded config is a :class:`~analysis.app.config_sections.PipelineConfig`, each section an instance of
its schema's type (made from the section's parser: the schema and the objects the stages receive are one and
the same; ``cfg.identify.top_rate``; a section holds exactly its schema's keys).

The config is split by concept: :mod:`~analysis.app.config_schema` (the section parsers),
:mod:`~analysis.app.config_sections` (the section types),
:mod:`~analysis.app.config_parse` (one section read: unknown keys, renames, error messages),
:mod:`~analysis.app.config_rules` (the owners' rules and cross-section references), this module (the
file read: ``${VAR}``, top-level keys, :func:`load_config`); encoder specs: :mod:`analysis.app.specs`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import yaml

from analysis.app.config_parse import PipelineError, _parse, _plain, unknown_keys
from analysis.app.config_rules import (
    check_class_names,
    check_models,
    check_neuron_lists,
    task_data_options,
    validate,
)
from analysis.app.config_schema import (
    DEFAULT_OUT,
    IDENTIFY_ALL,
    PER_TASK_DATA,
    PIPELINE_DATA,
    SAE_PIPELINE_ARGS,
    SECTIONS,
    TOP_KEYS,
    IdentifySplits,
    TaskOptions,
    TrainerOptions,
    _parser,
    _soundfont_parser,
    _synthetic_parser,
    _task_parser,
    section_parser,
)
from analysis.app.config_renames import RENAMED, owner_kwargs
from analysis.app.config_sections import PipelineConfig, Section, section_type
from analysis.app.specs import encoder_spec
from analysis.runs import strict_yaml

__all__ = [
    "DEFAULT_OUT",
    "IDENTIFY_ALL",
    "PER_TASK_DATA",
    "PIPELINE_DATA",
    "RENAMED",
    "SAE_PIPELINE_ARGS",
    "SECTIONS",
    "TOP_KEYS",
    "IdentifySplits",
    "PipelineConfig",
    "PipelineError",
    "Section",
    "TaskOptions",
    "TrainerOptions",
    "_parse",
    "_parser",
    "_plain",
    "_soundfont_parser",
    "_synthetic_parser",
    "_task_parser",
    "check_class_names",
    "check_models",
    "check_neuron_lists",
    "expand_env",
    "load_config",
    "owner_kwargs",
    "task_data_options",
    "validate",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(obj: Any, where: str) -> Any:
    """Replace ``${VAR}`` in every string of ``obj`` by the environment variable; unset → error."""
    if isinstance(obj, dict):
        return {k: expand_env(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):

        def sub(m: "re.Match[str]") -> str:
            if m.group(1) not in os.environ:
                raise PipelineError(f"{where}: environment variable {m.group(1)} is not set (used as {obj!r})")
            return os.environ[m.group(1)]

        return _VAR.sub(sub, obj)
    return obj


def load_config(path: str | Path, out: Optional[str] = None) -> PipelineConfig:
    """Read and validate a pipeline YAML; ``out`` overrides its ``out``. Returns the config with every
    default filled in (plus ``_config_path``), each section an instance of its schema's type
    (:mod:`analysis.app.config_sections`: ``cfg.identify.top_rate``)."""
    p = Path(path)
    try:
        raw = strict_yaml.safe_load(p.read_text(encoding="utf-8"), str(p))
    except OSError as e:
        raise PipelineError(f"{p}: cannot read pipeline config: {e}") from e
    except yaml.YAMLError as e:
        raise PipelineError(f"{p}: malformed YAML: {e}") from e
    if not isinstance(raw, dict):
        raise PipelineError(f"{p}: a pipeline config must be a mapping, got {type(raw).__name__}")
    unknown_keys(p, "", raw, TOP_KEYS)
    raw = expand_env(raw, str(p))
    cfg: dict[str, Any] = {
        "description": raw.get("description"),
        "out": raw.get("out", DEFAULT_OUT),
        "seed": raw.get("seed", 0),
    }
    if not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool):
        raise PipelineError(f"{p}: seed must be an integer, got {cfg['seed']!r}")
    if not isinstance(cfg["out"], str) or not cfg["out"]:
        raise PipelineError(f"{p}: out must be a folder path, got {cfg['out']!r}")
    tasks = raw.get("tasks") or {}
    if isinstance(tasks, list):
        tasks = {t: {} for t in tasks}
    if not isinstance(tasks, dict):
        raise PipelineError(f"{p}: tasks must be a mapping task → options, got {tasks!r}")
    if not tasks:
        raise PipelineError(f"{p}: 'tasks' is empty: name at least one task")
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        raise PipelineError(f"{p}: models must be a mapping name → class_path/init_args, got {models!r}")
    if not models:
        raise PipelineError(f"{p}: 'models' is empty: name at least one model (class_path/init_args)")
    for section in SECTIONS:
        cfg[section] = _section(section, raw.get(section), p, section)
    for writer in ("synthetic", "soundfont"):
        if cfg["data"][writer] is not None:
            cfg["data"][writer] = _section(f"data.{writer}", cfg["data"][writer], p, f"data.{writer}")
    cfg["tasks"] = {str(t): _section("tasks.<task>", spec, p, f"tasks.{t}") for t, spec in tasks.items()}
    cfg["models"] = {str(m): _model(m, spec, p) for m, spec in models.items()}
    if out is not None:
        cfg["out"] = out
    cfg["_config_path"] = str(p)
    validate(cfg)
    return PipelineConfig(cfg)


def _section(section: str, value: Any, path: Path, where: str) -> Section:
    """The section ``section`` (``identify``, ``data.synthetic``, ``tasks.<task>``) at ``where`` of the file
    ``path``, parsed (defaults filled in) and typed."""
    make = section_parser(section)
    return section_type(section, make)(_parse(make, value, path, where))


def _model(name: str, spec: Any, path: Path) -> dict[str, Any]:
    """The encoder spec of ``models.<name>`` (:func:`analysis.app.specs.encoder_spec`)."""
    try:
        return encoder_spec(spec, f"models.{name}")
    except ValueError as e:
        raise PipelineError(f"{path}: {e}") from e
