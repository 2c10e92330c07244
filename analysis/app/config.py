"""The pipeline config: its schema, ``${VAR}`` expansion and validation.

A pipeline YAML has the top-level keys of :data:`SECTIONS` plus ``out``, ``seed``, ``description``,
``tasks`` and ``models``. Each section is the keyword arguments of the function or class it is handed to,
so its keys, types and defaults have exactly one owner, that signature:

=============  ==================================================================================
``data``       shared :class:`~datamodules.EVARDataModule` arguments (``evar_root``, ``batch_size``,
               ``num_workers``, ...) and ``synthetic`` (:func:`~datamodules.synthetic.write_task`)
``tasks``      task → per-task :class:`~datamodules.EVARDataModule` arguments (``fold``, ``label_map``,
               ``task_def``, ...) and :class:`TaskOptions` (``top_rate``, ``evar_task``, ablation lists)
``models``     name → ``class_path`` / ``init_args`` of an encoder (checked against its signature)
``trainer``    :class:`TrainerOptions`
``stats``      :class:`~callbacks.ActivationStatsCallback` (``tokens``, ``level``) + ``identify_splits``
``identify``   :func:`~analysis.app.identify.identify_run`
``report``     :class:`~analysis.app.report.ReportSpec`
``stability``  :func:`~analysis.app.stability.stability_run` + ``enabled``
``probe``      :func:`~analysis.app.probe.fit_seeds`
``ablation``   :class:`~callbacks.AblationCallback` + ``batch_size``
``gallery``    :func:`~analysis.app.gallery.build_gallery` + ``enabled``
=============  ==================================================================================

Validation uses jsonargparse (the machinery of LightningCLI): unknown keys, wrong types and unset
``${VAR}`` are errors naming the file and the key path (``tasks.cremad.top_rat``).
"""
from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml
from jsonargparse import ArgumentParser, Namespace
from torch import nn

from analysis.app.gallery import build_gallery
from analysis.app.identify import identify_run
from analysis.app.probe import fit_seeds
from analysis.app.report import ReportSpec
from analysis.app.stability import stability_run
from analysis.runs.conditions import NeuronList
from callbacks import AblationCallback, ActivationStatsCallback
from datamodules import EVARDataModule
from datamodules.synthetic import write_task


class PipelineError(RuntimeError):
    """A stage failed or the config is invalid; the message names the stage / file and key."""


@dataclass
class TrainerOptions:
    """The Lightning Trainer's hardware settings used by the statistics and ablation stages."""

    accelerator: str = "cpu"
    devices: Union[int, str, list[int]] = 1
    strategy: str = "auto"
    precision: Union[str, int] = "32-true"
    num_nodes: int = 1


@dataclass
class TaskOptions:
    """Pipeline options of one task (beside its :class:`~datamodules.EVARDataModule` arguments).

    Attributes:
        top_rate: AAPE ``top_rate`` of this task (default: ``identify.top_rate``, else the study's value).
        evar_task: read this EVAR task under the pipeline's task name (e.g. one CSV analysed twice).
        neuron_lists: explicit neuron lists ablated on this task (default: ``ablation.neuron_lists``).
        shared: class groups whose AAPE sets are intersected (default: ``ablation.shared``).
        class_aliases: names of the lists' classes → the task's classes (default: ``ablation.class_aliases``).
    """

    top_rate: Optional[float] = None
    evar_task: Optional[str] = None
    neuron_lists: Optional[list[NeuronList]] = None
    shared: Optional[list[list[str]]] = None
    class_aliases: Optional[dict[str, str]] = None


#: EVARDataModule arguments that differ per task (the rest of its arguments go in ``data``).
PER_TASK_DATA = ("fold", "label_map", "unit_sec", "resample", "file_sample_rate", "predict_splits", "limit",
                 "task_def")
#: EVARDataModule arguments the pipeline sets itself.
PIPELINE_DATA = ("task", "seed", "sample_rate")

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


# -- section parsers --------------------------------------------------------------------------------
def _parser() -> ArgumentParser:
    return ArgumentParser(exit_on_error=False, default_env=False)


def _data_parser() -> ArgumentParser:
    p = _parser()
    p.add_class_arguments(EVARDataModule, skip=set(PER_TASK_DATA) | set(PIPELINE_DATA))
    p.add_argument("--synthetic", type=Optional[dict[str, Any]], default=None,
                   help="write synthetic EVAR tasks (write_task arguments)")
    return p


def _synthetic_parser() -> ArgumentParser:
    p = _parser()
    p.add_function_arguments(write_task, skip={"root", "task", "seed", "overwrite"})
    p.add_argument("--seed", type=Optional[int], default=None, help="seed of the synthetic audio (default: seed)")
    return p


def _task_parser() -> ArgumentParser:
    p = _parser()
    skip = {n for n in _init_params(EVARDataModule) if n not in PER_TASK_DATA}
    p.add_class_arguments(EVARDataModule, skip=skip)
    p.add_class_arguments(TaskOptions)
    return p


def _stats_parser() -> ArgumentParser:
    p = _parser()
    p.add_class_arguments(ActivationStatsCallback, skip={"out_dir", "suffix", "splits", "overwrite", "log_tensorboard",
                                                         "config"})
    p.add_argument("--identify_splits", type=Optional[list[str]], default=["train", "valid"],
                   help="splits whose clips are counted (null: every split)")
    return p


def _stability_parser() -> ArgumentParser:
    p = _parser()
    p.add_argument("--enabled", type=bool, default=True)
    p.add_function_arguments(stability_run, skip={"run_dir", "seed", "mode", "top_rate", "filter_rate",
                                                  "activation_bar_ratio", "top_rate_table", "tensorboard",
                                                  "overwrite"})
    return p


def _ablation_parser() -> ArgumentParser:
    p = _parser()
    p.add_class_arguments(AblationCallback, skip={"out_dir", "run_dir", "overwrite"})
    p.add_argument("--batch_size", type=Optional[int], default=None, help="test batch size (default: data's)")
    return p


def _gallery_parser() -> ArgumentParser:
    p = _parser()
    p.add_argument("--enabled", type=bool, default=False,
                   help="build the listening gallery of every run (needs top_clips.pt from the statistics pass)")
    p.add_function_arguments(build_gallery, skip={"run_dir", "dest", "evar_root", "tensorboard", "overwrite"})
    return p


def _function_parser(fn: Callable, skip: set[str]) -> Callable[[], ArgumentParser]:
    def make() -> ArgumentParser:
        p = _parser()
        p.add_function_arguments(fn, skip=skip)
        return p

    return make


def _class_parser(cls: type) -> Callable[[], ArgumentParser]:
    def make() -> ArgumentParser:
        p = _parser()
        p.add_class_arguments(cls)
        return p

    return make


#: Section name → parser factory (each section is validated on its own so errors name the section).
SECTIONS: dict[str, Callable[[], ArgumentParser]] = {
    "data": _data_parser,
    "trainer": _class_parser(TrainerOptions),
    "stats": _stats_parser,
    "identify": _function_parser(identify_run, {"run_dir", "top_rate_table", "overwrite"}),
    "report": _class_parser(ReportSpec),
    "stability": _stability_parser,
    "probe": _function_parser(fit_seeds, {"run_dir", "out_dir", "overwrite", "accelerator", "tensorboard", "name"}),
    "ablation": _ablation_parser,
    "gallery": _gallery_parser,
}
TOP_KEYS = {"out", "seed", "description", "tasks", "models"} | set(SECTIONS)
DEFAULT_OUT = "outputs/pipeline"


def _init_params(cls: type) -> list[str]:
    return [n for n in inspect.signature(cls.__init__).parameters if n != "self"]


def _plain(x: Any) -> Any:
    """Namespaces → dicts, tuples → lists (the config as it would be written in YAML)."""
    if isinstance(x, Namespace):
        x = x.as_dict()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if k != "__path__"}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _parse(make: Callable[[], ArgumentParser], value: Any, path: Path, key: str) -> dict[str, Any]:
    """Validate the mapping at ``key`` of the file ``path`` with its parser; defaults filled in. Errors
    name the file and the key path."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise PipelineError(f"{path}: {key} must be a mapping, got {type(value).__name__} {value!r}")
    parser = make()
    allowed = set(parser.get_defaults().as_dict()) - {"__path__"}
    unknown = set(value) - allowed
    if unknown:
        raise PipelineError(f"{path}: unknown key(s) {sorted(unknown)} in '{key}'; allowed: {sorted(allowed)}")
    try:
        ns = parser.parse_object(value)
    except Exception as e:  # jsonargparse's ArgumentError / TypeError: say where, keep its message
        msg = " ".join(str(e).split())
        raise PipelineError(f"{path}: {key}: {msg}") from e
    return _plain(ns)


def _model_spec(name: str, spec: Any, path: Path) -> dict[str, Any]:
    """An encoder spec ``{class_path, init_args}`` (the class is checked by :func:`check_models`)."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise PipelineError(f"{path}: models.{name} needs a 'class_path' (and optional 'init_args')")
    extra = set(spec) - {"class_path", "init_args"}
    if extra:
        raise PipelineError(f"{path}: unknown key(s) {sorted(extra)} in 'models.{name}'; allowed: class_path, init_args")
    return {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}


def check_models(cfg: dict[str, Any]) -> None:
    """Every model's class must import and accept its ``init_args`` (names and types), checked through
    jsonargparse before any stage runs; the error names the config file and the model."""
    for name, spec in cfg["models"].items():
        p = _parser()
        p.add_subclass_arguments(nn.Module, "encoder")
        try:
            p.parse_object({"encoder": spec})
        except Exception as e:
            raise PipelineError(f"{cfg['_config_path']}: models.{name}: {' '.join(str(e).split())}") from e


def load_config(path: str | Path, out: Optional[str] = None) -> dict[str, Any]:
    """Read and validate a pipeline YAML; ``out`` overrides its ``out``. Returns the config as a dict with
    every default filled in (plus ``_config_path``)."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise PipelineError(f"{p}: cannot read pipeline config: {e}") from e
    except yaml.YAMLError as e:
        raise PipelineError(f"{p}: malformed YAML: {e}") from e
    if not isinstance(raw, dict):
        raise PipelineError(f"{p}: a pipeline config must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise PipelineError(f"{p}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    raw = expand_env(raw, str(p))
    cfg: dict[str, Any] = {"description": raw.get("description"), "out": raw.get("out", DEFAULT_OUT),
                           "seed": raw.get("seed", 0)}
    if not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool):
        raise PipelineError(f"{p}: seed must be an integer, got {cfg['seed']!r}")
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
    for section, make in SECTIONS.items():
        cfg[section] = _parse(make, raw.get(section), p, section)
    if cfg["data"]["synthetic"] is not None:
        cfg["data"]["synthetic"] = _parse(_synthetic_parser, cfg["data"]["synthetic"], p, "data.synthetic")
    cfg["tasks"] = {str(t): _parse(_task_parser, spec, p, f"tasks.{t}") for t, spec in tasks.items()}
    cfg["models"] = {str(m): _model_spec(m, spec, p) for m, spec in models.items()}
    if out is not None:
        cfg["out"] = out
    cfg["_config_path"] = str(p)
    return cfg


def task_data_options(cfg: dict[str, Any], task: str) -> dict[str, Any]:
    """The :class:`~datamodules.EVARDataModule` arguments of ``task``: the ``data`` section (without
    ``synthetic`` and ``evar_root``) and the task's own data arguments."""
    shared = {k: v for k, v in cfg["data"].items() if k not in ("synthetic", "evar_root")}
    own = {k: v for k, v in cfg["tasks"][task].items() if k in PER_TASK_DATA}
    return {**shared, **own}
