"""The pipeline config's schema: one section parser per top-level key, each built with jsonargparse from the
signature of the function or class the section is handed to (its keys, types and defaults have one owner),
the config keys renamed from their owner's parameter names in :mod:`analysis.app.config_renames`.

The table of sections and what each is handed to is in :mod:`analysis.app.config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Union

from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeInt, PositiveInt

from analysis.app.config_parse import _init_params
from analysis.app.config_renames import RENAMED

from analysis.app.gallery import build_gallery
from analysis.app.identify import identify_run
from analysis.app.probe import fit_seeds
from analysis.app.report import ReportSpec
from analysis.app.sae import SAEPipelineOptions, train_sae
from analysis.app.stability import stability_run
from analysis.app.summary import write_summary
from analysis.app.tuning import SteeringOptions, TuningOptions
from analysis.runs.conditions import NeuronList
from callbacks import AblationCallback, ActivationStatsCallback
from datamodules import EVARDataModule
from datamodules.metadata import Split
from datamodules.soundfont import write_soundfont_task
from datamodules.synthetic import write_task


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


# -- section parsers --------------------------------------------------------------------------------
def _parser() -> ArgumentParser:
    return ArgumentParser(exit_on_error=False, default_env=False)


def _renamed(section: str, add: Callable[[ArgumentParser, set[str]], None], skip: set[str]) -> ArgumentParser:
    """A section parser from ``add(parser, skip)`` (the owner's arguments) with the :data:`RENAMED`
    parameters of ``section`` under their config names (same type, default and help as the owner's)."""
    renamed = {old: new for (s, old), new in RENAMED.items() if s == section}
    full = _parser()
    add(full, skip)
    owner = {a.dest: a for a in full._actions}
    p = _parser()
    add(p, skip | set(renamed))
    for old, new in renamed.items():
        a = owner[old]
        p.add_argument(f"--{new}", type=a._typehint, default=a.default, help=a.help)
    return p


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


def _identify_parser() -> ArgumentParser:
    return _renamed(
        "identify",
        lambda q, skip: q.add_function_arguments(identify_run, skip=skip),
        {"run_dir", "top_rate_table", "overwrite"},
    )


def _ablation_parser() -> ArgumentParser:
    p = _renamed(
        "ablation",
        lambda q, skip: q.add_class_arguments(AblationCallback, skip=skip),
        {"out_dir", "run_dir", "overwrite"},
    )
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
    "identify": _identify_parser,
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
#: The parsers of the nested sections (their values are sections too: :mod:`analysis.app.config_sections`).
NESTED_SECTIONS: dict[str, Callable[[], ArgumentParser]] = {
    "data.synthetic": _synthetic_parser,
    "data.soundfont": _soundfont_parser,
    "tasks.<task>": _task_parser,
}


def section_parser(section: str) -> Callable[[], ArgumentParser]:
    """The parser factory of ``section`` (a key of :data:`SECTIONS` or :data:`NESTED_SECTIONS`)."""
    return SECTIONS.get(section) or NESTED_SECTIONS[section]


DEFAULT_OUT = "outputs/pipeline"
