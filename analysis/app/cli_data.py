"""The verbs that write data: ``synth`` (synthetic tones), ``soundfont`` (notes rendered from a General MIDI
SoundFont), ``tasks`` (the study's task subsets as EVAR-format CSVs) and ``stimuli`` (tuning stimulus sets).
Registered in :data:`analysis.app.cli_registry.VERBS`; the CLI: :mod:`analysis.app.cli`.
"""

from __future__ import annotations

import argparse


from datamodules.evar import resolve_evar_root
from datamodules.study_tasks import STUDY_TASKS, build_study_task
from datamodules.stimuli import DIMENSIONS, write_stimuli
from datamodules.stimulus_sounds import SOURCES
from datamodules.gm_families import GM_FAMILIES
from datamodules.soundfont import KINDS, write_soundfont_task
from datamodules.synthetic import FAMILIES, write_task
from analysis.app.cli_registry import default, verb


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
