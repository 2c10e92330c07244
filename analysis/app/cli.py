"""``python -m analysis <verb>``: every step of aape that is not a Lightning stage (those run through
``python train.py fit|test|predict``). Each verb calls the same public function as the pipeline's stage.

Existing outputs are refused (exit code 2, the message names the file) unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import yaml

from analysis.aape import ACTIVATION_BAR_RATIO, FILTER_RATE
from analysis.app.compare import build_compare
from analysis.app.config import PipelineError, load_config
from analysis.app.config_reference import config_yaml
from analysis.app.confusion import confusion_figure
from analysis.app.gallery import NEURON_SETS, build_gallery
from analysis.app.identify import identify_run
from analysis.app.pipeline import add_arguments as add_pipeline_arguments
from analysis.app.pipeline import Pipeline, run_pipeline
from analysis.app.probe import fit_seeds
from analysis.app.report import ReportSpec, build_report
from analysis.app.sae_config import sae_from_config
from analysis.app.stability import stability_run
from analysis.app.summary import write_summary
from analysis.app.verify import verify
from analysis.runs import strict_yaml
from analysis.app.tuning import tuning_from_run
from analysis.app.tuning_report import build_tuning_report
from analysis.runs.atomic import OutputExistsError
from analysis.runs.layout import OutputTree, tuning_csv
from analysis.stability import REPLICATES
from datamodules.evar import resolve_evar_root
from datamodules.study_tasks import STUDY_TASKS, build_study_task
from datamodules.stimuli import DIMENSIONS, write_stimuli
from datamodules.stimulus_sounds import SOURCES
from datamodules.gm_families import GM_FAMILIES
from datamodules.soundfont import KINDS, write_soundfont_task
from datamodules.synthetic import FAMILIES, write_task

#: verb → (one-line help, add its arguments, run it). Filled by :func:`verb` below.
VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def default(fn: Callable, name: str) -> object:
    """The default of parameter ``name`` of ``fn``: the CLI shows the function's own defaults."""
    return inspect.signature(fn).parameters[name].default


def _print_paths(paths: Iterable[Path]) -> int:
    for path in paths:
        print(path)
    return 0


def verb(name: str, help: str, add: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]):
        VERBS[name] = (help, add, run)
        return run

    return register


# -- synth ----------------------------------------------------------------------------------------------
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="EVAR root to write into")
    p.add_argument("--task", nargs="+", required=True, choices=sorted(FAMILIES), help="task name(s)")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed -> identical files)")
    p.add_argument(
        "--clips-per-class",
        type=int,
        default=default(write_task, "clips_per_class"),
        help="clips per octave class (default %(default)s)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=default(write_task, "duration"),
        help="clip length in seconds (default %(default)s)",
    )
    p.add_argument(
        "--octaves",
        type=int,
        nargs="+",
        default=list(default(write_task, "octaves")),
        help="octaves (default %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")


@verb("synth", "write synthetic EVAR-format tasks (harmonic tones labelled by octave)", _synth_args)
def _synth(a: argparse.Namespace) -> int:
    for task in a.task:
        csv = write_task(
            a.out,
            task,
            a.seed,
            clips_per_class=a.clips_per_class,
            duration=a.duration,
            octaves=a.octaves,
            overwrite=a.overwrite,
        )
        print(f"wrote {csv} ({a.clips_per_class} clips x {len(a.octaves)} octaves, {a.duration} s)")
    return 0


# -- soundfont ------------------------------------------------------------------------------------------
def _soundfont_args(p: argparse.ArgumentParser) -> None:
    fn = write_soundfont_task
    p.add_argument("--out", required=True, help="EVAR root to write into")
    p.add_argument(
        "--kind",
        nargs="+",
        required=True,
        choices=KINDS,
        help="task kind(s): instrument family, octave (midi // 12 - 1) or pitch class",
    )
    p.add_argument("--prefix", default="gm", help="task names are <prefix>_<kind> (default %(default)s)")
    p.add_argument("--sf2", default=None, help="a General MIDI .sf2 file (default: pretty_midi's TimGM6mb.sf2)")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed and .sf2 -> identical files)")
    p.add_argument("--clips-per-class", type=int, default=default(fn, "clips_per_class"), help="default %(default)s")
    p.add_argument("--duration", type=float, default=default(fn, "duration"), help="seconds (default %(default)s)")
    p.add_argument(
        "--hold",
        type=float,
        default=default(fn, "hold"),
        help="share of the clip the key is held before its release (default %(default)s)",
    )
    p.add_argument(
        "--velocity",
        type=int,
        nargs=2,
        default=list(default(fn, "velocity")),
        metavar=("LOW", "HIGH"),
        help="MIDI velocity range (default %(default)s)",
    )
    p.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=list(default(fn, "splits")),
        metavar=("TRAIN", "VALID", "TEST"),
        help="split ratios per class (default %(default)s)",
    )
    p.add_argument(
        "--octaves",
        type=int,
        nargs="+",
        default=list(default(fn, "octaves")),
        help="octave classes of the octave task (default %(default)s)",
    )
    p.add_argument(
        "--families",
        nargs="+",
        default=None,
        choices=list(GM_FAMILIES),
        help="instrument families used (default: all eleven)",
    )
    p.add_argument(
        "--note-range",
        nargs=3,
        action="append",
        default=[],
        metavar=("FAMILY", "LOW", "HIGH"),
        help="playable MIDI notes of a family (overrides its default); repeatable",
    )
    p.add_argument("--gain-db", type=float, default=default(fn, "gain_db"), help="synth gain (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")


@verb(
    "soundfont",
    "render NSynth-like EVAR-format tasks (instrument family, octave, pitch class) from a GM SoundFont",
    _soundfont_args,
)
def _soundfont(a: argparse.Namespace) -> int:
    ranges = {f: [int(lo), int(hi)] for f, lo, hi in a.note_range} or None
    for kind in a.kind:
        csv = write_soundfont_task(
            a.out,
            f"{a.prefix}_{kind}",
            a.seed,
            sf2=a.sf2,
            clips_per_class=a.clips_per_class,
            duration=a.duration,
            splits=a.splits,
            velocity=a.velocity,
            hold=a.hold,
            octaves=a.octaves,
            families=a.families,
            note_ranges=ranges,
            gain_db=a.gain_db,
            overwrite=a.overwrite,
        )
        print(f"wrote {csv} ({a.clips_per_class} clips per class, {a.duration} s)")
    return 0


# -- tasks ------------------------------------------------------------------------------------------------
def _tasks_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="the study's task subsets and what each reads")
    b = sub.add_parser(
        "build", help="write <evar_root>/evar/metadata/<name>.csv from the source task's metadata (no audio is read)"
    )
    b.add_argument("name", choices=sorted(STUDY_TASKS), help="study task")
    b.add_argument("--evar-root", default=None, help="EVAR root (default $EVAR)")
    b.add_argument(
        "--vox1-meta",
        default=None,
        help="VoxCeleb1 speaker metadata vox1_meta.csv (tab-separated; vc1_gender_nationality only)",
    )
    b.add_argument(
        "--seed", type=int, default=default(build_study_task, "seed"), help="seed of the draw (default %(default)s)"
    )
    b.add_argument(
        "--size", type=int, default=None, help="clips to draw (voxforge_balanced: per language); default: the study's"
    )
    b.add_argument("--overwrite", action="store_true", help="replace an existing CSV")


@verb(
    "tasks",
    "the study's task subsets: 'list', or 'build <name>' (VC1 gender x nationality, balanced VoxForge, "
    "NSynth subsets) as EVAR-format CSVs",
    _tasks_args,
)
def _tasks(a: argparse.Namespace) -> int:
    if a.action == "list":
        for t in STUDY_TASKS.values():
            print(f"{t.name:24s} from {t.source}.csv, default size {t.size}: {t.description}")
        return 0
    path, table = build_study_task(
        a.name, resolve_evar_root(a.evar_root), vox1_meta=a.vox1_meta, seed=a.seed, size=a.size, overwrite=a.overwrite
    )
    splits = ", ".join(f"{k} {v}" for k, v in table["split"].value_counts().sort_index().items())
    print(f"wrote {path}: {len(table)} clips, {table['label'].nunique()} classes ({splits})")
    return 0


# -- identify / stability ---------------------------------------------------------------------------------
def _top_rate_table(path: Optional[str]) -> Optional[dict[str, float]]:
    if path is None:
        return None
    try:
        cfg = strict_yaml.safe_load(Path(path).read_text(encoding="utf-8"), str(path)) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read top-rate table: {e}") from e
    table = cfg.get("top_rate", cfg) if isinstance(cfg, dict) else None
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) for v in table.values()):
        raise ValueError(f"{path}: expected a mapping 'top_rate: {{task: rate, default: rate}}'")
    return {str(k): float(v) for k, v in table.items()}


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder <out>/<task>_<suffix> (over_zero.pt, classes.txt, ...)")
    p.add_argument(
        "--mode",
        choices=["default", "lape"],
        default="default",
        help="'lape' reproduces LAPE identify.py exactly; 'default' fixes its defects (default)",
    )
    p.add_argument(
        "--top-rate",
        type=float,
        default=None,
        help="share of neurons selected by lowest entropy (default: per task, 0.02 for esc50/gise51, else 0.01)",
    )
    p.add_argument(
        "--filter-rate",
        type=float,
        default=FILTER_RATE,
        help=f"quantile a neuron must exceed for some class to be a candidate (default {FILTER_RATE})",
    )
    p.add_argument(
        "--activation-bar-ratio",
        type=float,
        default=ACTIVATION_BAR_RATIO,
        help=f"quantile a selected neuron must exceed for a class to be assigned (default {ACTIVATION_BAR_RATIO})",
    )
    p.add_argument(
        "--top-rate-table",
        default=None,
        help="YAML 'top_rate: {task: rate, default: rate}' overriding the study's per-task rates",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _selection(a: argparse.Namespace) -> dict:
    return dict(
        mode=a.mode,
        top_rate=a.top_rate,
        filter_rate=a.filter_rate,
        activation_bar_ratio=a.activation_bar_ratio,
        top_rate_table=_top_rate_table(a.top_rate_table),
    )


@verb("identify", "select class-specific neurons of one run folder (neurons.csv/.pt/.json)", _selection_args)
def _identify(a: argparse.Namespace) -> int:
    result, run = identify_run(a.run, overwrite=a.overwrite, **_selection(a))
    sizes = result.class_masks().flatten(1).sum(1).tolist()
    print(
        f"{run.path}: {result.n_selected} neurons selected (top_rate={result.top_rate}, mode={result.mode}); "
        f"{sum(1 for s in sizes if s)}/{len(sizes)} classes covered; wrote neurons.csv, neurons.pt, neurons.json"
    )
    return 0


def _stability_args(p: argparse.ArgumentParser) -> None:
    _selection_args(p)
    p.add_argument(
        "--scheme",
        choices=["clips", "tokens"],
        default="clips",
        help="effective sample size of the binomial resampling: n_clips (conservative, default) "
        "or n_tokens (optimistic)",
    )
    p.add_argument("--replicates", type=int, default=REPLICATES, help=f"resampling replicates (default {REPLICATES})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-sweep", action="store_true", help="skip the threshold sweep")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir")


@verb("stability", "bootstrap stability of the class neuron sets + threshold sweep", _stability_args)
def _stability(a: argparse.Namespace) -> int:
    return _print_paths(
        stability_run(
            a.run,
            scheme=a.scheme,
            replicates=a.replicates,
            seed=a.seed,
            sweep=not a.no_sweep,
            tensorboard=a.tensorboard,
            overwrite=a.overwrite,
            **_selection(a),
        ).values()
    )


# -- report ---------------------------------------------------------------------------------------------
def _figure_spec_args(p: argparse.ArgumentParser) -> None:
    """The figure options shared by ``report`` and ``compare``."""
    p.add_argument(
        "--config",
        action="append",
        default=[],
        help="report YAML (configs/report/*.yaml) naming cross_task pairs and within_task tasks; repeatable",
    )
    p.add_argument(
        "--cross",
        nargs=2,
        action="append",
        default=[],
        metavar=("TASK_A", "TASK_B"),
        help="add a cross-task figure; repeatable",
    )
    p.add_argument("--within", action="append", default=[], metavar="TASK", help="add a within-task figure; repeatable")


def _figure_spec(a: argparse.Namespace) -> Optional[ReportSpec]:
    """The figures asked for by :func:`_figure_spec_args` (None: the defaults)."""
    if not (a.config or a.cross or a.within):
        return None
    spec = ReportSpec.from_yaml(a.config)
    spec.cross_task += [tuple(x) for x in a.cross]
    spec.within_task += list(a.within)
    return spec


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, help="output folder holding <task>_<suffix>/ run folders")
    p.add_argument("--suffix", required=True, help="model suffix of the run folders (e.g. analysis, vit)")
    _figure_spec_args(p)
    p.add_argument("--dest", default=None, help="output folder (default <runs>/report_<suffix>)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir for figures, table text and scalars")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


@verb("report", "task statistics table and cross/within-task figures of one model suffix", _report_args)
def _report(a: argparse.Namespace) -> int:
    spec = _figure_spec(a)
    return _print_paths(
        build_report(
            a.runs, a.suffix, spec=spec, dest=a.dest, tensorboard=a.tensorboard, overwrite=a.overwrite
        ).values()
    )


# -- compare ----------------------------------------------------------------------------------------------
def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        nargs=2,
        action="append",
        required=True,
        metavar=("SUFFIX", "RUNS"),
        help="a model: its run-folder suffix and the folder holding its <task>_<suffix>/ run folders; "
        "give two or more, in column order",
    )
    _figure_spec_args(p)
    p.add_argument("--dest", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


@verb(
    "compare",
    "several models side by side: one task table, cross-/within-task figures and the entropy "
    "distribution of all neurons",
    _compare_args,
)
def _compare(a: argparse.Namespace) -> int:
    models = dict(a.model)
    if len(models) != len(a.model):
        raise ValueError(f"--model: a suffix is given twice ({[m for m, _ in a.model]})")
    spec = _figure_spec(a)
    return _print_paths(build_compare(models, spec=spec, dest=a.dest, overwrite=a.overwrite).values())


# -- probe ------------------------------------------------------------------------------------------------
def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="statistics run folder (features.pt, gts.pt, index.csv)")
    p.add_argument("--out", required=True, help="output folder (probe_results.csv, probe_seed<seed>.ckpt)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(default(fit_seeds, "seeds")),
        help="one probe per seed (default %(default)s)",
    )
    p.add_argument(
        "--lr", type=float, default=default(fit_seeds, "lr"), help="Adam learning rate (default %(default)s)"
    )
    p.add_argument("--weight-decay", type=float, default=default(fit_seeds, "weight_decay"), help="default %(default)s")
    p.add_argument("--max-epochs", type=int, default=default(fit_seeds, "max_epochs"), help="default %(default)s")
    p.add_argument(
        "--patience",
        type=int,
        default=default(fit_seeds, "patience"),
        help="early-stopping patience in epochs (default %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default min(200, train clips)")
    p.add_argument("--tensorboard", default=None, help="folder for TensorBoard logs (default: none)")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--overwrite", action="store_true")


@verb("probe", "fit the linear probe on a run folder's embeddings, one fit per seed", _probe_args)
def _probe(a: argparse.Namespace) -> int:
    df = fit_seeds(
        a.run,
        a.out,
        seeds=a.seeds,
        lr=a.lr,
        weight_decay=a.weight_decay,
        max_epochs=a.max_epochs,
        patience=a.patience,
        batch_size=a.batch_size,
        overwrite=a.overwrite,
        accelerator=a.accelerator,
        tensorboard=a.tensorboard,
    )
    print(df.to_string(index=False))
    return 0


# -- confusion --------------------------------------------------------------------------------------------
def _confusion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ablation", required=True, help="ablation folder (ablation_confusion.csv, ablation_conditions.json)"
    )
    p.add_argument(
        "--condition",
        action="append",
        required=True,
        metavar="NAME",
        help="condition of ablation.csv (e.g. 'shared:ANG&HAP', 'class:jazz'); repeatable",
    )
    p.add_argument("--out", default=None, help="PDF to write (default <ablation>/ablation_confusion-<conditions>.pdf)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PDF")


@verb("confusion", "draw the change in confusion vs baseline of chosen ablation conditions", _confusion_args)
def _confusion(a: argparse.Namespace) -> int:
    return _print_paths([confusion_figure(a.ablation, a.condition, a.out, a.overwrite)])


# -- gallery ----------------------------------------------------------------------------------------------
def _gallery_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run", required=True, help="statistics run folder with top_clips.pt (and neurons.pt / neurons.csv)"
    )
    p.add_argument("--dest", default=None, help="gallery folder (default <run>/gallery)")
    p.add_argument(
        "--neurons",
        nargs="+",
        default=list(default(build_gallery, "neurons")),
        metavar="|".join(NEURON_SETS) + "|L:N",
        help="'class' (each class's neurons), 'selected' (every neuron of neurons.csv) and/or layer:index "
        "entries such as 3:17 (default %(default)s)",
    )
    p.add_argument(
        "--per-class",
        type=int,
        default=default(build_gallery, "per_class"),
        help="at most this many neurons per class, lowest entropy first (default: all)",
    )
    p.add_argument(
        "--clips",
        type=int,
        default=default(build_gallery, "clips"),
        help="top clips shown per neuron (default: all kept in top_clips.pt)",
    )
    p.add_argument(
        "--excerpt-seconds",
        type=float,
        default=default(build_gallery, "excerpt_seconds"),
        help="length of the audio excerpt around the peak (default %(default)s; whole clip when shorter)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=default(build_gallery, "batch_size"),
        help="clips per forward of the activation-map pass (default %(default)s)",
    )
    p.add_argument("--evar-root", default=None, help="read the audio from this EVAR root (default: the manifest's)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir for audio and image summaries")
    p.add_argument("--overwrite", action="store_true", help="replace an existing gallery")


@verb(
    "gallery",
    "static listening gallery: each neuron's top clips with spectrogram, activation overlay and audio",
    _gallery_args,
)
def _gallery(a: argparse.Namespace) -> int:
    return _print_paths(
        [
            build_gallery(
                a.run,
                dest=a.dest,
                neurons=a.neurons,
                per_class=a.per_class,
                clips=a.clips,
                excerpt_seconds=a.excerpt_seconds,
                batch_size=a.batch_size,
                evar_root=a.evar_root,
                tensorboard=a.tensorboard,
                overwrite=a.overwrite,
            )
        ]
    )


# -- stimuli / tuning -------------------------------------------------------------------------------------
def _stimuli_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="EVAR root to write into")
    p.add_argument("--dimension", nargs="+", required=True, choices=sorted(DIMENSIONS), help="stimulus dimension(s)")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed -> identical files)")
    p.add_argument("--values", type=float, nargs="+", default=None, help="parameter values (default: the dimension's)")
    p.add_argument(
        "--clips-per-value",
        type=int,
        default=default(write_stimuli, "clips_per_value"),
        help="clips per value (default %(default)s)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=default(write_stimuli, "duration"),
        help="clip length in seconds (default %(default)s)",
    )
    p.add_argument(
        "--source",
        default=default(write_stimuli, "source"),
        choices=list(SOURCES),
        help="pitch/loudness sound: harmonic tone, pure sine or SoundFont instruments (default %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")


@verb(
    "stimuli",
    "write tuning stimulus sets (EVAR tasks tuning_<dimension>: one class per parameter value)",
    _stimuli_args,
)
def _stimuli(a: argparse.Namespace) -> int:
    for d in a.dimension:
        csv = write_stimuli(
            a.out,
            d,
            a.seed,
            values=a.values,
            clips_per_value=a.clips_per_value,
            duration=a.duration,
            source=a.source,
            overwrite=a.overwrite,
        )
        print(f"wrote {csv}")
    return 0


def _tuning_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="statistics run folder of a stimulus set (counted with class_sums)")
    p.add_argument("--dimension", required=True, choices=sorted(DIMENSIONS), help="the stimulus set's dimension")
    p.add_argument("--out", required=True, help="tuning folder to write <dimension>.pt/.csv (and figures) into")
    p.add_argument(
        "--curve",
        default="p_active",
        choices=["p_active", "mean"],
        help="curve the preferred value, bandwidth and selectivity are read from (default %(default)s)",
    )
    p.add_argument(
        "--task-run",
        nargs="*",
        default=[],
        metavar="TASK=RUN",
        help="run folders of tasks (with neurons.pt): figures of each class's units, range claims, page",
    )
    p.add_argument("--model", default="model", help="model name in the range table and page (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


@verb(
    "tuning", "tuning curves of every unit from a stimulus run folder (+ figures of each class's units)", _tuning_args
)
def _tuning(a: argparse.Namespace) -> int:
    runs = {}
    for item in a.task_run:
        task, sep, run = item.partition("=")
        if not sep or not task or not run:
            raise ValueError(f"--task-run expects TASK=RUN, got {item!r}")
        runs[task] = Path(run)
    table = tuning_from_run(a.run, a.dimension, a.out, curve=a.curve, overwrite=a.overwrite)
    print(f"{len(table)} units, {int(table['preferred_value'].notna().sum())} with a preferred {a.dimension}")
    paths = build_tuning_report(a.model, [a.dimension], runs, a.out, overwrite=a.overwrite) if runs else []
    return _print_paths([Path(a.out) / tuning_csv(a.dimension), *paths])


# -- summary / pipeline -----------------------------------------------------------------------------------
def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the pipeline YAML the outputs were made with")
    p.add_argument("--out", default=None, help="the pipeline's output folder (default: the config's 'out')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report/")


@verb("summary", "write report/summary.md and report/index.html of a finished pipeline run", _summary_args)
def _summary(a: argparse.Namespace) -> int:
    cfg = Pipeline(load_config(a.config, out=a.out)).cfg  # with the feature models of an sae section
    return _print_paths(
        write_summary(OutputTree(cfg["out"]), cfg["models"], cfg["tasks"], overwrite=a.overwrite, **cfg["summary"])
    )


# -- sae ----------------------------------------------------------------------------------------------------
def _sae_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="SAE YAML (configs/sae/*.yaml)")
    p.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sae.pt / metrics.csv")


@verb("sae", "train a sparse autoencoder on one site of an encoder (sae.pt + metrics.csv)", _sae_args)
def _sae(a: argparse.Namespace) -> int:
    row = sae_from_config(a.config, out=a.out, overwrite=a.overwrite)
    print(", ".join(f"{k}={v}" for k, v in row.items()))
    return 0


@verb("pipeline", "run the whole study from one YAML (resumable stages)", add_pipeline_arguments)
def _pipeline(a: argparse.Namespace) -> int:
    if a.print_config:
        try:
            print(config_yaml(a.config, a.out), end="")
        except PipelineError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if a.config is None:
        print("error: pipeline needs --config FILE (configs/pipeline/*.yaml)", file=sys.stderr)
        return 2
    return run_pipeline(a.config, a.out, a.force, a.only)


@verb(
    "verify",
    "check that every file the pipeline's stages wrote under OUT is unchanged (sha256, size)",
    lambda p: p.add_argument("out", help="a pipeline output folder, or a folder inside it (e.g. a run folder)"),
)
def _verify(a: argparse.Namespace) -> int:
    checks = verify(a.out)
    for c in checks:
        print(c)
    bad = [c for c in checks if c.damaged]
    print(
        f"{len(bad)} of {len(checks)} stage(s) damaged" if bad else f"all {len(checks)} stage(s) intact",
        file=sys.stderr if bad else sys.stdout,
    )
    return 1 if bad else 0


# -- entry ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for name, (help_, add, _) in VERBS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pipeline":  # logs stage by stage with its own handler
        return VERBS["pipeline"][2](args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = VERBS[args.command][2](args)
        except (OutputExistsError, FileNotFoundError, ValueError, PipelineError) as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
    seen: set[str] = set()
    for w in caught:  # print each distinct warning once, without source lines
        msg = str(w.message)
        if msg not in seen and not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)
    return code
