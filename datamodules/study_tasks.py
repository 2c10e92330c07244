"""The study's task subsets as EVAR-format metadata CSVs, built from metadata only (no audio is read).

``python -m analysis tasks build <name> [--evar-root $EVAR] [--vox1-meta PATH] [--seed 0] [--size N]``
reads the metadata of an EVAR task already prepared with EVAR's own scripts and writes
``<evar_root>/evar/metadata/<name>.csv`` next to it; the audio stays where EVAR put it (the new task's
``folder`` in :data:`datamodules.tasks.TASKS` is the source task's folder). Every builder is a plain function
of tables: the same input rows (in any order) and the same seed give the same CSV, byte for byte.

Rules (:data:`STUDY_TASKS` holds the names, sources and default sizes):

``vc1_gender_nationality`` (source ``vc1.csv`` + VoxCeleb1's ``vox1_meta.csv``)
    1. A clip is eligible when its speaker (the ``label`` of ``vc1.csv``, a VoxCeleb1 ID) has a row in
       ``vox1_meta.csv`` (tab-separated; columns ``VoxCeleb1 ID``, ``Gender``, ``Nationality``) with a
       non-empty gender and nationality.
    2. Its class is ``<gender>_<nationality>``: gender lower-cased (``m``/``f``), nationality with runs of
       spaces or commas replaced by ``_`` (``m_USA``, ``f_New_Zealand``).
    3. :func:`seeded_sample` draws ``size`` eligible clips (default 1,500).
``voxforge_balanced`` (source ``voxforge.csv``)
    Per language (``label``), :func:`seeded_sample` draws ``per_class`` clips (default 5,000; 6 languages
    → 30,000). A language with fewer clips is an error.
``nspitch_subset`` / ``nsynth_subset`` (source ``nsynth.csv``)
    1. The MIDI pitch of a clip is read from its NSynth note name, the file stem
       ``<instrument>-<pitch>-<velocity>`` (e.g. ``nsynth-train/audio/bass_synthetic_068-049-025.wav`` → 49).
    2. Clips with pitch in MIDI 21–108 (the 88 piano keys; octaves 0–8 under ``midi_to_octave``) are
       eligible; :func:`seeded_sample` draws ``size`` of them (default 22,000).
    3. ``nspitch_subset`` labels a clip by its MIDI pitch (``"49"``; analyse it with ``label_map:
       midi_to_octave`` → 9 octave classes), ``nsynth_subset`` by its instrument family (the ``label``
       of ``nsynth.csv``, EVAR's ``instrument_family_str``). Both draw the same clips.

Common to all: :func:`seeded_sample` sorts the eligible rows by ``file_name`` (so the CSV's row order
does not matter) and takes the first rows of a seeded permutation (``numpy.random.default_rng(seed)``).
Each clip keeps its EVAR split (column ``split``; the EVAR split is also kept in ``source_split``), except
that a class whose drawn clips hold no train clip gets its first drawn clip moved to train
(:func:`cover_train`: the class list is built from the train split). For the NSynth subsets the classes
covered are the octaves (``midi_to_octave``) and then the instrument families, so both CSVs have the same
splits. Output rows are sorted by
``file_name``; columns ``file_name, label, split, source_split`` plus the source's own label
(``speaker``, ``family``) where it differs. Asking for more clips than are eligible is an error naming
the file and the counts; a missing column is an error naming the file and the column.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from analysis.runs.atomic import check_writable, save_csv

from .metadata import LABEL_MAPS, MetadataError, read_csv

__all__ = [
    "StudyTask",
    "STUDY_TASKS",
    "VOX1_META_COLUMNS",
    "NSYNTH_MIDI_RANGE",
    "StudyTaskError",
    "seeded_sample",
    "cover_train",
    "gender_nationality_class",
    "nsynth_pitch",
    "vc1_gender_nationality",
    "voxforge_balanced",
    "nsynth_subset",
    "read_source",
    "read_vox1_meta",
    "build_study_task",
]

#: Columns of VoxCeleb1's ``vox1_meta.csv`` the VC1 builder needs.
VOX1_META_COLUMNS = ("VoxCeleb1 ID", "Gender", "Nationality")
#: MIDI pitches kept in the NSynth subset (inclusive): Surge's 88 pitches, 9 octave classes.
NSYNTH_MIDI_RANGE = (21, 108)
OUTPUT_COLUMNS = ["file_name", "label", "split", "source_split"]


class StudyTaskError(MetadataError):
    """Metadata that cannot give the requested study task; the message names the file and the problem."""


@dataclass(frozen=True)
class StudyTask:
    """A study task built from an EVAR task's metadata.

    Attributes:
        name: task name of the CSV written (``evar/metadata/<name>.csv``).
        source: EVAR task whose metadata CSV is read.
        size: default number of clips (per class for ``voxforge_balanced``).
        description: one line.
    """

    name: str
    source: str
    size: int
    description: str


STUDY_TASKS: dict[str, StudyTask] = {
    t.name: t
    for t in [
        StudyTask(
            "vc1_gender_nationality",
            "vc1",
            1500,
            "VoxCeleb1 clips of speakers with gender and nationality, class <gender>_<nationality>",
        ),
        StudyTask("voxforge_balanced", "voxforge", 5000, "VoxForge, the same number of clips per language"),
        StudyTask("nspitch_subset", "nsynth", 22000, "NSynth clips of MIDI 21-108, labelled by MIDI pitch"),
        StudyTask(
            "nsynth_subset", "nsynth", 22000, "the same NSynth clips as nspitch_subset, labelled by instrument family"
        ),
    ]
}


# -- rules ---------------------------------------------------------------------------------------------
def _need_columns(df: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StudyTaskError(f"{source}: no column(s) {missing} (columns: {list(df.columns)})")


def seeded_sample(df: pd.DataFrame, n: int, seed: int, source: str, what: str = "eligible clips") -> pd.DataFrame:
    """``n`` rows of ``df`` drawn without replacement: rows sorted by ``file_name``, then the first ``n``
    of a permutation by ``numpy.random.default_rng(seed)``; returned in draw order.

    >>> df = pd.DataFrame({"file_name": ["c", "a", "b"], "label": ["x", "y", "z"]})
    >>> a = seeded_sample(df, 2, seed=0, source="t.csv")["file_name"].tolist()
    >>> a == seeded_sample(df.iloc[::-1], 2, seed=0, source="t.csv")["file_name"].tolist()
    True
    >>> seeded_sample(df, 4, seed=0, source="t.csv")
    Traceback (most recent call last):
    ...
    datamodules.study_tasks.StudyTaskError: t.csv: 4 clips requested but only 3 eligible clips
    """
    if n < 1:
        raise StudyTaskError(f"{source}: the sample size must be >= 1, got {n}")
    if len(df) < n:
        raise StudyTaskError(f"{source}: {n} clips requested but only {len(df)} {what}")
    ordered = df.sort_values("file_name", kind="stable").reset_index(drop=True)
    order = np.random.default_rng(int(seed)).permutation(len(ordered))[:n]
    return ordered.iloc[order].reset_index(drop=True)


def cover_train(df: pd.DataFrame, by: Sequence[str] = ("label",)) -> pd.DataFrame:
    """Every class gets a train clip: for each column of ``by`` in turn, a value whose rows hold no
    ``train`` split gets the first of its rows (in ``df``'s order) moved to train. Returns a copy;
    ``source_split`` keeps the original split.

    >>> t = pd.DataFrame({"file_name": ["a", "b", "c"], "label": ["x", "y", "y"], "split": ["train", "test", "valid"]})
    >>> cover_train(t)["split"].tolist()
    ['train', 'train', 'valid']
    """
    out = df.copy()
    if "source_split" not in out.columns:
        out["source_split"] = out["split"]
    for key in by:
        has_train = set(out.loc[out["split"] == "train", key])
        for value in dict.fromkeys(out[key]):
            if value not in has_train:
                out.loc[out.index[out[key] == value][0], "split"] = "train"
    return out


def gender_nationality_class(gender: str, nationality: str) -> str:
    """``<gender>_<nationality>``: gender lower-cased, runs of spaces/commas in the nationality → ``_``.

    >>> gender_nationality_class("M", "USA"), gender_nationality_class("f", " New  Zealand ")
    ('m_USA', 'f_New_Zealand')
    """
    return f"{gender.strip().lower()}_{_SEPARATORS.sub('_', nationality.strip())}"


_SEPARATORS = re.compile(r"[\s,]+")
_NOTE = re.compile(r"-(\d{3})-(\d{3})$")


def nsynth_pitch(file_name: str) -> Optional[int]:
    """MIDI pitch from an NSynth note name ``<instrument>-<pitch>-<velocity>`` (the file stem); None when
    the stem has no such ending.

    >>> nsynth_pitch("nsynth-train/audio/bass_synthetic_068-049-025.wav"), nsynth_pitch("x.wav")
    (49, None)
    """
    m = _NOTE.search(Path(file_name).stem)
    return int(m.group(1)) if m else None


def _finish(df: pd.DataFrame, extra: Sequence[str] = (), by: Sequence[str] = ("label",)) -> pd.DataFrame:
    out = cover_train(df, by)
    return out[OUTPUT_COLUMNS + list(extra)].sort_values("file_name", kind="stable").reset_index(drop=True)


def vc1_gender_nationality(
    vc1: pd.DataFrame,
    meta: pd.DataFrame,
    *,
    size: int = 1500,
    seed: int = 0,
    source: str = "vc1.csv",
    meta_source: str = "vox1_meta.csv",
) -> pd.DataFrame:
    """The VoxCeleb1 gender × nationality task (module docstring): ``vc1`` has ``file_name, label
    (speaker), split``; ``meta`` the :data:`VOX1_META_COLUMNS`. Returns the rows of the CSV (extra column
    ``speaker``)."""
    _need_columns(vc1, ("file_name", "label", "split"), source)
    _need_columns(meta, VOX1_META_COLUMNS, meta_source)
    m = meta.assign(**{c: meta[c].astype(str).str.strip() for c in VOX1_META_COLUMNS})
    m = m[(m["Gender"] != "") & (m["Nationality"] != "")]
    dup = m["VoxCeleb1 ID"][m["VoxCeleb1 ID"].duplicated()]
    if len(dup):
        raise StudyTaskError(f"{meta_source}: speaker {dup.iloc[0]!r} has more than one row")
    cls = {r["VoxCeleb1 ID"]: gender_nationality_class(r["Gender"], r["Nationality"]) for _, r in m.iterrows()}
    eligible = vc1[vc1["label"].astype(str).str.strip().isin(cls)]
    eligible = eligible.assign(speaker=eligible["label"].astype(str).str.strip())
    drawn = seeded_sample(
        eligible, size, seed, f"{source} + {meta_source}", "clips of speakers with a gender and a nationality"
    )
    drawn = drawn.assign(label=drawn["speaker"].map(cls))
    return _finish(drawn, ["speaker"])


def voxforge_balanced(
    df: pd.DataFrame, *, per_class: int = 5000, seed: int = 0, source: str = "voxforge.csv"
) -> pd.DataFrame:
    """VoxForge with ``per_class`` clips of every language (module docstring)."""
    _need_columns(df, ("file_name", "label", "split"), source)
    parts = []
    for lang in sorted(df["label"].astype(str).unique()):
        rows = df[df["label"].astype(str) == lang]
        parts.append(seeded_sample(rows, per_class, seed, source, f"clips of class {lang!r}"))
    if not parts:
        raise StudyTaskError(f"{source}: no rows")
    return _finish(pd.concat(parts, ignore_index=True))


def nsynth_subset(
    df: pd.DataFrame,
    *,
    size: int = 22000,
    seed: int = 0,
    label: str = "pitch",
    midi_range: tuple[int, int] = NSYNTH_MIDI_RANGE,
    source: str = "nsynth.csv",
) -> pd.DataFrame:
    """The NSynth subset (module docstring): ``label="pitch"`` (MIDI number) or ``"family"`` (the source's
    ``label``, kept in column ``family``). The drawn clips do not depend on ``label``."""
    if label not in ("pitch", "family"):
        raise ValueError(f"label must be 'pitch' or 'family', got {label!r}")
    _need_columns(df, ("file_name", "label", "split"), source)
    pitch = df["file_name"].map(nsynth_pitch)
    bad = pitch.isna().to_numpy().nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise StudyTaskError(
            f"{source}: row {i}: file_name {df['file_name'].iloc[i]!r} is not an NSynth note "
            "name <instrument>-<pitch>-<velocity>"
        )
    lo, hi = midi_range
    eligible = df.assign(pitch=pitch.astype(int), family=df["label"].astype(str))
    eligible = eligible[(eligible["pitch"] >= lo) & (eligible["pitch"] <= hi)]
    drawn = seeded_sample(eligible, size, seed, source, f"clips with MIDI pitch {lo}-{hi}")
    octave = LABEL_MAPS["midi_to_octave"]
    drawn = drawn.assign(
        octave=[octave(str(p)) for p in drawn["pitch"]],
        label=drawn["pitch"].astype(str) if label == "pitch" else drawn["family"],
    )
    # the same splits for both labellings: every octave and every family gets a train clip
    return _finish(drawn, ["family"] if label == "pitch" else [], by=("octave", "family"))


# -- files -----------------------------------------------------------------------------------------------
def read_source(path: Union[str, os.PathLike]) -> pd.DataFrame:
    """An EVAR metadata CSV with a ``split`` column (as text; a leading unnamed index column dropped)."""
    df = read_csv(path)
    _need_columns(df, ("split",), str(path))
    return df


def read_vox1_meta(path: Union[str, os.PathLike]) -> pd.DataFrame:
    """VoxCeleb1's speaker metadata ``vox1_meta.csv`` (tab-separated), as text with stripped column names."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"VoxCeleb1 metadata not found: {p}")
    try:
        df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:
        raise StudyTaskError(f"Cannot parse {p} (tab-separated VoxCeleb1 metadata): {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    _need_columns(df, VOX1_META_COLUMNS, str(p))
    return df


def build_study_task(
    name: str,
    evar_root: Union[str, os.PathLike],
    *,
    vox1_meta: Union[str, os.PathLike, None] = None,
    seed: int = 0,
    size: Optional[int] = None,
    overwrite: bool = False,
) -> tuple[Path, pd.DataFrame]:
    """Write ``<evar_root>/evar/metadata/<name>.csv`` for the study task ``name`` (see
    :data:`STUDY_TASKS`; ``size`` overrides its default, per class for ``voxforge_balanced``) from the
    source task's metadata next to it. Refuses an existing CSV unless ``overwrite``. Returns the path and
    the table written."""
    if name not in STUDY_TASKS:
        raise ValueError(f"Unknown study task {name!r}; known: {', '.join(STUDY_TASKS)}")
    task = STUDY_TASKS[name]
    meta_dir = Path(evar_root) / "evar" / "metadata"
    out = check_writable(meta_dir / f"{name}.csv", overwrite)
    src_path = meta_dir / f"{task.source}.csv"
    src = read_source(src_path)
    n = task.size if size is None else int(size)
    if name == "vc1_gender_nationality":
        if vox1_meta is None:
            raise ValueError(f"{name} needs VoxCeleb1's speaker metadata (--vox1-meta PATH to vox1_meta.csv)")
        table = vc1_gender_nationality(
            src, read_vox1_meta(vox1_meta), size=n, seed=seed, source=str(src_path), meta_source=str(vox1_meta)
        )
    elif name == "voxforge_balanced":
        table = voxforge_balanced(src, per_class=n, seed=seed, source=str(src_path))
    else:
        table = nsynth_subset(
            src, size=n, seed=seed, label="pitch" if name == "nspitch_subset" else "family", source=str(src_path)
        )
    save_csv(table, out, overwrite=overwrite)
    return out, table
