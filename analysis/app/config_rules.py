"""The pipeline config's rules beyond types (module docstring of :mod:`analysis.app.config`, steps 2 and 3):
the rules each owner states for its own arguments, called with the config's values, and the references
between sections; plus the checks that need the data or the models (class names, neuron lists, encoder
specs), run by the pipeline before its first stage. Every error names the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.aape import check_rates
from analysis.app.config_parse import PipelineError, _owner_check
from analysis.app.config_renames import owner_kwargs
from analysis.app.config_schema import PER_TASK_DATA
from analysis.app.probe import check_seeds
from analysis.app.sae import SAEPipelineOptions
from analysis.app.specs import check_encoder
from analysis.app.tuning import SteeringOptions, TuningOptions
from analysis.significance import check_alpha
from callbacks import AblationCallback, ActivationStatsCallback
from datamodules import EVARDataModule
from datamodules.soundfont import check_soundfont_args
from datamodules.stimuli import check_stimuli_args
from datamodules.synthetic import check_task_args
from datamodules.tasks import UnknownTaskError, get_task


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
    abl = owner_kwargs("ablation", {k: v for k, v in cfg["ablation"].items() if k != "batch_size"})
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


def task_data_options(cfg: dict[str, Any], task: str) -> dict[str, Any]:
    """The :class:`~datamodules.EVARDataModule` arguments of ``task``: the ``data`` section (without
    ``synthetic``, ``soundfont`` and ``evar_root``) and the task's own data arguments."""
    shared = {k: v for k, v in cfg["data"].items() if k not in ("synthetic", "soundfont", "evar_root")}
    own = {k: v for k, v in cfg["tasks"][task].items() if k in PER_TASK_DATA}
    return {**shared, **own}


def check_models(cfg: dict[str, Any]) -> None:
    """Every model's class must import and accept its ``init_args`` (names and types), checked through
    jsonargparse before any stage runs (:func:`analysis.app.specs.check_encoder`); the error names the
    config file and the model."""
    for name, spec in cfg["models"].items():
        try:
            check_encoder(spec, f"models.{name}")
        except ValueError as e:
            raise PipelineError(f"{cfg['_config_path']}: {e}") from e
