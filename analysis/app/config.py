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
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import yaml
from jsonargparse import ArgumentParser, Namespace
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import nn

from analysis.aape import check_rates
from analysis.significance import check_alpha
from analysis.app.gallery import build_gallery
from analysis.app.identify import identify_run
from analysis.app.probe import check_seeds, fit_seeds
from analysis.app.report import ReportSpec
from analysis.app.sae import SAEPipelineOptions, train_sae
from analysis.app.stability import stability_run
from analysis.runs import strict_yaml
from analysis.app.summary import write_summary
from analysis.app.tuning import SteeringOptions, TuningOptions
from analysis.runs.conditions import NeuronList
from callbacks import AblationCallback, ActivationStatsCallback
from datamodules import EVARDataModule
from datamodules.metadata import Split
from datamodules.soundfont import check_soundfont_args, write_soundfont_task
from datamodules.stimuli import check_stimuli_args
from datamodules.synthetic import check_task_args, write_task
from datamodules.tasks import UnknownTaskError, get_task


class PipelineError(RuntimeError):
    """A stage failed or the config is invalid; the message names the stage / file and key."""


@dataclass
class TrainerOptions:
    """The Lightning Trainer's hardware settings used by the statistics and ablation stages."""

    accelerator: str = "cpu"
    devices: Union[PositiveInt, Literal[-1, "-1", "auto"], list[NonNegativeInt]] = 1
    strategy: str = "auto"
    precision: Union[str, int] = "32-true"
    num_nodes: PositiveInt = 1


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


#: ``stats.identify_splits`` value that counts every clip of a task: every split, every fold of a fold task
#: and the metadata rows without a split (split ``none`` in index.csv).
IDENTIFY_ALL = "all"
IdentifySplits = Union[Literal[IDENTIFY_ALL], list[Split], None]

#: EVARDataModule arguments that differ per task (the rest of its arguments go in ``data``).
PER_TASK_DATA = (
    "fold",
    "label_map",
    "unit_sec",
    "resample",
    "file_sample_rate",
    "predict_splits",
    "limit",
    "task_def",
    "allow_duplicates",
)
#: EVARDataModule arguments the pipeline sets itself.
PIPELINE_DATA = ("task", "seed", "sample_rate", "predict_unsplit")

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
    p.add_argument(
        "--synthetic",
        type=Optional[dict[str, Any]],
        default=None,
        help="write synthetic EVAR tasks (write_task arguments)",
    )
    p.add_argument(
        "--soundfont",
        type=Optional[dict[str, Any]],
        default=None,
        help="render EVAR tasks from a GM SoundFont (write_soundfont_task arguments)",
    )
    return p


def _synthetic_parser() -> ArgumentParser:
    p = _parser()
    p.add_function_arguments(write_task, skip={"root", "task", "seed", "overwrite"})
    p.add_argument("--seed", type=Optional[int], default=None, help="seed of the synthetic audio (default: seed)")
    return p


def _soundfont_parser() -> ArgumentParser:
    p = _parser()
    p.add_function_arguments(write_soundfont_task, skip={"root", "task", "seed", "overwrite"})
    p.add_argument("--seed", type=Optional[int], default=None, help="seed of the rendered notes (default: seed)")
    return p


def _task_parser() -> ArgumentParser:
    p = _parser()
    skip = {n for n in _init_params(EVARDataModule) if n not in PER_TASK_DATA}
    p.add_class_arguments(EVARDataModule, skip=skip)
    p.add_class_arguments(TaskOptions)
    return p


def _stats_parser() -> ArgumentParser:
    p = _parser()
    p.add_class_arguments(
        ActivationStatsCallback, skip={"out_dir", "suffix", "splits", "overwrite", "log_tensorboard", "config"}
    )
    p.add_argument(
        "--identify_splits",
        type=IdentifySplits,
        default=["train", "valid"],
        help="clips counted for the identification: 'all' (every clip of the task, including "
        "rows without a split and every fold), a list of splits, or null (every split)",
    )
    return p


def _stability_parser() -> ArgumentParser:
    p = _parser()
    p.add_argument("--enabled", type=bool, default=True)
    p.add_function_arguments(
        stability_run,
        skip={
            "run_dir",
            "seed",
            "mode",
            "top_rate",
            "filter_rate",
            "activation_bar_ratio",
            "top_rate_table",
            "min_activity",
            "tensorboard",
            "overwrite",
        },
    )
    return p


def _ablation_parser() -> ArgumentParser:
    p = _parser()
    p.add_class_arguments(AblationCallback, skip={"out_dir", "run_dir", "overwrite"})
    p.add_argument("--batch_size", type=Optional[PositiveInt], default=None, help="test batch size (default: data's)")
    return p


def _gallery_parser() -> ArgumentParser:
    p = _parser()
    p.add_argument(
        "--enabled",
        type=bool,
        default=False,
        help="build the listening gallery of every run (needs top_clips.pt from the statistics pass)",
    )
    p.add_function_arguments(build_gallery, skip={"run_dir", "dest", "evar_root", "tensorboard", "overwrite"})
    return p


#: Arguments of :func:`~analysis.app.sae.train_sae` the pipeline sets itself (the trainer's from ``trainer``).
SAE_PIPELINE_ARGS = {
    "encoder",
    "site",
    "datamodule",
    "dest",
    "accelerator",
    "devices",
    "precision",
    "strategy",
    "tensorboard",
    "name",
    "overwrite",
    "seed",
}


def _sae_parser() -> ArgumentParser:
    p = _parser()
    p.add_class_arguments(SAEPipelineOptions)
    p.add_function_arguments(train_sae, skip=SAE_PIPELINE_ARGS)
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
    "summary": _function_parser(write_summary, {"tree", "models", "tasks", "overwrite"}),
    "sae": _sae_parser,
    "tuning": _class_parser(TuningOptions),
    "steering": _class_parser(SteeringOptions),
}
TOP_KEYS = {"out", "seed", "description", "tasks", "models"} | set(SECTIONS)
DEFAULT_OUT = "outputs/pipeline"


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
    parser = make()
    allowed = set(parser.get_defaults().as_dict()) - {"__path__"}
    unknown = set(value) - allowed
    if unknown:
        raise PipelineError(f"{path}: unknown key(s) {sorted(unknown)} in '{key}'; allowed: {sorted(allowed)}")
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


def validate(cfg: dict[str, Any]) -> None:
    """The owners' rules and the references between sections (module docstring, steps 2 and 3); no I/O."""
    p = Path(cfg["_config_path"])
    ident = cfg["identify"]
    _owner_check(
        p,
        "identify",
        ident,
        lambda: check_rates(ident["top_rate"], ident["filter_rate"], ident["activation_bar_ratio"]),
    )
    _owner_check(p, "probe", cfg["probe"], lambda: check_seeds(cfg["probe"]["seeds"]))
    _owner_check(p, "summary", cfg["summary"], lambda: check_alpha(cfg["summary"]["alpha"]))
    st = cfg["stats"]
    _owner_check(p, "stats", st, lambda: ActivationStatsCallback(out_dir=".", tokens=st["tokens"], level=st["level"]))
    names = list(cfg["tasks"])
    for i, t in enumerate(cfg["report"]["within_task"]):
        if t not in names:
            raise PipelineError(f"{p}: report.within_task[{i}]: {t!r} is not a task of this config (tasks: {names})")
    for i, pair in enumerate(cfg["report"]["cross_task"]):
        bad = [t for t in pair if t not in names]
        if bad:
            raise PipelineError(f"{p}: report.cross_task[{i}]: {bad} not a task of this config (tasks: {names})")
    tu = cfg["tuning"]
    _owner_check(p, "tuning", tu, lambda: TuningOptions(**tu))
    steer = cfg["steering"]
    _owner_check(p, "steering", steer, lambda: SteeringOptions(**steer))
    for key, known in (("models", list(cfg["models"])), ("tasks", names)):
        bad = [x for x in steer[key] or [] if x not in known]
        if bad:
            raise PipelineError(f"{p}: steering.{key}: {bad} not among the config's {key} {known}")
    for d in tu["dimensions"]:
        _owner_check(
            p,
            f"tuning.{d}",
            tu,
            lambda: check_stimuli_args(
                d, (tu["values"] or {}).get(d), tu["clips_per_value"], tu["duration"], tu["source"], 16000
            ),
        )
    syn, sfont = cfg["data"]["synthetic"], cfg["data"]["soundfont"]
    if syn is not None and sfont is not None:
        raise PipelineError(f"{p}: data: give either 'synthetic' or 'soundfont', not both (they write every task)")
    if sfont is not None and sfont["sf2"] and not Path(sfont["sf2"]).is_file():
        raise PipelineError(f"{p}: data.soundfont.sf2: SoundFont not found: {sfont['sf2']}")
    abl = {k: v for k, v in cfg["ablation"].items() if k != "batch_size"}
    for task, opts in cfg["tasks"].items():
        where = f"tasks.{task}"
        evar_task = opts["evar_task"] or task
        _owner_check(p, where, opts, lambda: check_rates(top_rate=opts["top_rate"]))
        data = task_data_options(cfg, task)
        _owner_check(
            p,
            where,
            {**cfg["data"], **opts},
            lambda: EVARDataModule(evar_root=cfg["data"]["evar_root"], task=evar_task, **data),
        )
        per_task = {**abl, **{k: opts[k] for k in ("neuron_lists", "shared", "class_aliases") if opts[k] is not None}}
        _owner_check(
            p,
            "ablation" if per_task == abl else f"{where} / ablation",
            per_task,
            lambda: AblationCallback(out_dir=".", **per_task),
        )
        if syn is not None:
            s = {k: v for k, v in syn.items() if k != "seed"}
            _owner_check(p, "data.synthetic", s, lambda: check_task_args(evar_task, **s))
        if sfont is not None:
            f = {k: v for k, v in sfont.items() if k not in ("seed", "sf2", "gain_db")}
            f["note_ranges_"] = f.pop("note_ranges")
            _owner_check(p, "data.soundfont", f, lambda: check_soundfont_args(evar_task, **f))
        _check_task_definition(p, where, evar_task, opts)
    _check_sae(p, cfg)


def _check_sae(p: Path, cfg: dict[str, Any]) -> None:
    """The ``sae`` section names models and tasks of the config, and trained SAEs that exist."""
    sae = cfg["sae"]
    for key, names in (("models", list(cfg["models"])), ("train_tasks", list(cfg["tasks"]))):
        for i, name in enumerate(sae[key] or []):
            if name not in names:
                raise PipelineError(
                    f"{p}: sae.{key}[{i}]: {name!r} is not in '{key.replace('train_', '')}' of this config ({names})"
                )
    for model, sites in (sae["load"] or {}).items():
        if model not in cfg["models"]:
            raise PipelineError(f"{p}: sae.load.{model}: not a model of this config ({list(cfg['models'])})")
        for site, path in sites.items():
            if not Path(path).exists():
                raise PipelineError(f"{p}: sae.load.{model}.{site}: {path} does not exist")
    if sae["enabled"]:
        clash = [
            f"{m}{sae['suffix']}" for m in (sae["models"] or cfg["models"]) if f"{m}{sae['suffix']}" in cfg["models"]
        ]
        if clash:
            raise PipelineError(f"{p}: sae.suffix: the feature models {clash} would replace models of the same name")
    try:
        SAEPipelineOptions(**{k: sae[k] for k in ("enabled", "models", "sites", "load", "train_tasks", "suffix")})
        if sae["architecture"] == "topk" and sae["d_sae"] and not 1 <= sae["k"] <= sae["d_sae"]:
            raise ValueError(f"k={sae['k']} must be in 1..d_sae={sae['d_sae']}")
    except (ValueError, TypeError) as e:
        raise PipelineError(f"{p}: sae: {e}") from e


def check_class_names(cfg: dict[str, Any], task: str, classes: list[str]) -> None:
    """The class names of the ablation's ``neuron_lists`` targets, ``shared`` groups and ``topk_classes``
    (through ``class_aliases``) must be classes of ``task``; the error names the file and key path."""
    a, opts, where = cfg["ablation"], cfg["tasks"][task], cfg["_config_path"]

    def own(key: str) -> tuple[str, Any]:  # the task's value wins over the ablation section's
        return (f"tasks.{task}.{key}", opts[key]) if opts.get(key) is not None else (f"ablation.{key}", a[key])

    aliases = own("class_aliases")[1] or {}
    lists_key, lists = own("neuron_lists")
    shared_key, shared = own("shared")
    named = [(f"{lists_key}[{i}].targets", t) for i, nl in enumerate(lists or []) for t in nl["targets"]]
    named += [(f"{shared_key}[{i}]", c) for i, grp in enumerate(shared or []) for c in grp]
    named += [("ablation.topk_classes", c) for c in (a["topk_classes"] or [])]
    for key, name in named:
        if aliases.get(name, name) not in classes:
            raise PipelineError(
                f"{where}: {key}: {name!r} is not a class of task {task!r} (classes: {classes}"
                f"{', aliases: ' + str(aliases) if aliases else ''})"
            )


def check_neuron_lists(cfg: dict[str, Any], model: str, site_neurons: list[int]) -> None:
    """Every ``[layer, neuron]`` of the ablation's neuron lists (section and per task) must exist in the
    model (``site_neurons`` per layer); the error names the file, key path and model."""
    sections = [("ablation.neuron_lists", cfg["ablation"]["neuron_lists"])]
    sections += [(f"tasks.{t}.neuron_lists", o["neuron_lists"]) for t, o in cfg["tasks"].items()]
    for key, lists in sections:
        for i, nl in enumerate(lists or []):
            for pair in nl["neurons"]:
                ok = len(pair) == 2 and 0 <= pair[0] < len(site_neurons) and 0 <= pair[1] < site_neurons[pair[0]]
                if not ok:
                    raise PipelineError(
                        f"{cfg['_config_path']}: {key}[{i}].neurons: {pair} is not a [layer, neuron] "
                        f"of model '{model}' ({len(site_neurons)} layers, neurons per layer "
                        f"{site_neurons})"
                    )


def _check_task_definition(p: Path, where: str, evar_task: str, opts: dict[str, Any]) -> None:
    """A ``task_def`` must define a task; a fold task's ``fold`` must be one of its folds (tasks known
    without reading the EVAR root only)."""
    try:
        spec = get_task(evar_task, None, opts["task_def"])
    except UnknownTaskError:
        return  # defined by a YAML file next to its CSV: checked when the data is read
    except (ValueError, FileNotFoundError) as e:
        raise PipelineError(f"{p}: {where}.task_def: {' '.join(str(e).split())}") from e
    if spec.folds and not 1 <= opts["fold"] <= spec.folds:
        raise PipelineError(
            f"{p}: {where}.fold: fold {opts['fold']} is out of range: task {evar_task!r} has folds 1..{spec.folds}"
        )


def _model_spec(name: str, spec: Any, path: Path) -> dict[str, Any]:
    """An encoder spec ``{class_path, init_args}`` (the class is checked by :func:`check_models`)."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise PipelineError(f"{path}: models.{name} needs a 'class_path' (and optional 'init_args')")
    extra = set(spec) - {"class_path", "init_args"}
    if extra:
        raise PipelineError(
            f"{path}: unknown key(s) {sorted(extra)} in 'models.{name}'; allowed: class_path, init_args"
        )
    if not isinstance(spec["class_path"], str):
        raise PipelineError(f"{path}: models.{name}.class_path must be a string, got {spec['class_path']!r}")
    if not isinstance(spec.get("init_args") or {}, dict):
        raise PipelineError(f"{path}: models.{name}.init_args must be a mapping, got {spec['init_args']!r}")
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
            key, problem = _jsonargparse_problem(str(e), {"encoder": spec})
            where = f"models.{name}" + (key[len("encoder") :] if key and key.startswith("encoder") else "")
            raise PipelineError(f"{cfg['_config_path']}: {where}: {problem}") from e


def load_config(path: str | Path, out: Optional[str] = None) -> dict[str, Any]:
    """Read and validate a pipeline YAML; ``out`` overrides its ``out``. Returns the config as a dict with
    every default filled in (plus ``_config_path``)."""
    p = Path(path)
    try:
        raw = strict_yaml.safe_load(p.read_text(encoding="utf-8"), str(p))
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
    for section, make in SECTIONS.items():
        cfg[section] = _parse(make, raw.get(section), p, section)
    if cfg["data"]["synthetic"] is not None:
        cfg["data"]["synthetic"] = _parse(_synthetic_parser, cfg["data"]["synthetic"], p, "data.synthetic")
    if cfg["data"]["soundfont"] is not None:
        cfg["data"]["soundfont"] = _parse(_soundfont_parser, cfg["data"]["soundfont"], p, "data.soundfont")
    cfg["tasks"] = {str(t): _parse(_task_parser, spec, p, f"tasks.{t}") for t, spec in tasks.items()}
    cfg["models"] = {str(m): _model_spec(m, spec, p) for m, spec in models.items()}
    if out is not None:
        cfg["out"] = out
    cfg["_config_path"] = str(p)
    validate(cfg)
    return cfg


def task_data_options(cfg: dict[str, Any], task: str) -> dict[str, Any]:
    """The :class:`~datamodules.EVARDataModule` arguments of ``task``: the ``data`` section (without
    ``synthetic``, ``soundfont`` and ``evar_root``) and the task's own data arguments."""
    shared = {k: v for k, v in cfg["data"].items() if k not in ("synthetic", "soundfont", "evar_root")}
    own = {k: v for k, v in cfg["tasks"][task].items() if k in PER_TASK_DATA}
    return {**shared, **own}
