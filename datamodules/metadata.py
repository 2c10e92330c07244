"""EVAR metadata CSV parsing — plain functions on pandas DataFrames.

:func:`read_metadata` turns a metadata CSV into a table with one row per CSV data row:

========== ==================================================================================
column     meaning
========== ==================================================================================
index      0-based data row of the CSV (the ``index`` of a batch)
file_name  path relative to ``work/<sr_dir>/<folder>/``
label      label after ``label_map`` (multi-label: comma-joined class names)
split      ``train`` / ``valid`` / ``test``; ``none`` for a row without a split when such rows are
           asked for (``unsplit=True``); ``""`` for rows that are not used
========== ==================================================================================

Rules: columns ``file_name`` and ``label`` are required, plus ``split`` or ``fold``; other columns are
ignored; a leading unnamed index column (``Unnamed: 0``) is dropped; rows with an empty split (or an empty
fold) are unused, unless ``unsplit=True`` asks for them: they then get split ``none`` and are mapped and
checked like valid/test rows (identification on every clip; the probe never uses them);
fold tasks put fold ``k`` in test and the other folds in train (no valid split). The class list is the
sorted unique labels of the train split (numerically sorted when every label is an integer), and a
valid/test label outside it is an error naming the CSV row.

Checks on the used rows, each an error naming the CSV row(s):

* ``file_name`` must stay inside the task's audio folder: no absolute path, no ``..`` leading out of it
  (checked on the path as written; symbolic links inside the folder are followed as usual);
* the same file (after path normalisation) in two splits is an error (it would leak between train and
  test); twice in one split it is an error too unless ``allow_duplicates`` (then each row counts);
* a label containing ``,`` is only allowed in a task declared multi-label (``multilabel``), where it
  joins class names;
* a task without train rows has no class list.

Label maps (``label_map``): a dict ``{old: new}`` (keys compared as strings; labels not in the dict are
kept; a ``null``/``None`` value drops the row), or the name of a built-in mapping in :data:`LABEL_MAPS`:

* ``midi_to_octave``: an integer MIDI pitch label ``m`` becomes ``octave_<m // 12 - 1>`` (MIDI 60 = C4 →
  ``octave_4``, MIDI 69 = A4 → ``octave_4``; same names as the synthetic octave tasks).
* ``midi_to_octave_number``: the same octave as a bare integer string (``"4"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal, Mapping, Optional, Sequence, Union, get_args

import pandas as pd

from analysis.runs.layout import NO_SPLIT

__all__ = [
    "MetadataError",
    "SPLITS",
    "NO_SPLIT",
    "Split",
    "LABEL_MAPS",
    "where",
    "read_csv",
    "assign_splits",
    "label_map_function",
    "apply_label_map",
    "split_labels",
    "class_list",
    "check_labels",
    "check_file_names",
    "check_duplicates",
    "check_commas",
    "read_metadata",
]

#: A split name.
Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = get_args(Split)


class MetadataError(ValueError):
    """A metadata CSV (or a request against it) that cannot be used; the message names file and row."""


def where(csv: Union[str, os.PathLike], row: int) -> str:
    """Human-readable location of a 0-based CSV data row (line = row + 2: header is line 1)."""
    return f"metadata {csv} row {row} (line {row + 2})"


def _midi_to_octave_number(label: str) -> str:
    m = int(label.strip())
    if not 0 <= m <= 127:
        raise ValueError(f"MIDI pitch {m} outside 0..127")
    return str(m // 12 - 1)


LABEL_MAPS: dict[str, Callable[[str], str]] = {
    "midi_to_octave": lambda s: f"octave_{_midi_to_octave_number(s)}",
    "midi_to_octave_number": _midi_to_octave_number,
}


def read_csv(path: Union[str, os.PathLike]) -> pd.DataFrame:
    """Read a metadata CSV as strings (empty cells stay ``""``), dropping a leading ``Unnamed: 0``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Metadata CSV not found: {p}")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except Exception as e:
        raise MetadataError(f"Cannot parse metadata CSV {p}: {e}") from None
    if len(df.columns) and str(df.columns[0]).startswith("Unnamed: 0"):
        df = df.drop(columns=df.columns[0])
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("file_name", "label") if c not in df.columns]
    if missing:
        raise MetadataError(
            f"Metadata CSV {p} has no column(s) {missing} (columns: {list(df.columns)}); "
            f"EVAR metadata needs file_name, label and split or fold"
        )
    if "split" not in df.columns and "fold" not in df.columns:
        raise MetadataError(f"Metadata CSV {p} has neither a 'split' nor a 'fold' column (columns: {list(df.columns)})")
    return df.reset_index(drop=True)


def assign_splits(df: pd.DataFrame, csv: Union[str, os.PathLike], folds: int = 0, fold: int = 1) -> pd.Series:
    """Split of every row: ``train``/``valid``/``test`` or ``""`` (unused).

    With ``folds > 0`` (a fold task) and a ``fold`` column, fold ``fold`` is test and the rest train.
    Otherwise the ``split`` column is used; a CSV with only a ``fold`` column is treated as a fold task
    with ``max(fold)`` folds. Errors name the CSV row of a bad value.
    """
    use_fold = "fold" in df.columns and (folds > 0 or "split" not in df.columns)
    if not use_fold:
        split = df["split"].astype(str).str.strip()
        bad = ~split.isin(("",) + SPLITS)
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise MetadataError(
                f"Bad split {df['split'].iloc[i]!r} in {where(csv, i)}; expected one of {list(SPLITS)} or empty"
            )
        return split.rename("split")
    raw = df["fold"].astype(str).str.strip()
    values = []
    for i, v in enumerate(raw):
        if v == "":
            values.append(0)
            continue
        try:
            f = float(v)
            if f != int(f):
                raise ValueError
            values.append(int(f))
        except ValueError:
            raise MetadataError(f"Bad fold {v!r} in {where(csv, i)}; expected an integer >= 1") from None
    n_folds = folds if folds > 0 else max(values, default=0)
    for i, f in enumerate(values):
        if raw.iloc[i] != "" and not 1 <= f <= n_folds:
            raise MetadataError(f"Fold {f} in {where(csv, i)} is out of range 1..{n_folds}")
    if not isinstance(fold, int) or not 1 <= fold <= n_folds:
        raise MetadataError(f"fold={fold!r} is out of range for {csv}: the task has folds 1..{n_folds}")
    out = ["" if f == 0 else ("test" if f == fold else "train") for f in values]
    return pd.Series(out, index=df.index, name="split")


def check_file_names(df: pd.DataFrame, csv: Union[str, os.PathLike]) -> None:
    """Every used ``file_name`` must name a path inside the task's audio folder (relative, no ``..``
    leading out of it); the error names the CSV row."""
    for i, (name, split) in enumerate(zip(df["file_name"], df["split"])):
        if split == "":
            continue
        norm = os.path.normpath(str(name))
        if os.path.isabs(norm) or norm in (".", "..") or norm.startswith(".." + os.sep):
            raise MetadataError(
                f"file_name {name!r} in {where(csv, int(df['index'].iloc[i]))} points outside the task's audio "
                f"folder; file names must be relative paths inside work/<sr_dir>/<folder>/"
            )


def check_duplicates(df: pd.DataFrame, csv: Union[str, os.PathLike], allow_duplicates: bool = False) -> None:
    """The same file (normalised path) in two splits is an error naming both rows; twice in one split too
    unless ``allow_duplicates``."""
    used = df[df["split"] != ""]
    keys = used["file_name"].map(lambda n: os.path.normpath(str(n)))
    first: dict[str, int] = {}
    for pos, key in enumerate(keys):
        if key not in first:
            first[key] = pos
            continue
        a, b = used.iloc[first[key]], used.iloc[pos]
        if a["split"] != b["split"]:
            raise MetadataError(
                f"File {b['file_name']!r} is in the {a['split']} split ({where(csv, int(a['index']))}) and in the "
                f"{b['split']} split ({where(csv, int(b['index']))}): a clip in two splits leaks between them"
            )
        if not allow_duplicates:
            raise MetadataError(
                f"File {b['file_name']!r} is listed twice in the {a['split']} split: {where(csv, int(a['index']))} "
                f"and row {int(b['index'])} (line {int(b['index']) + 2}); it would be counted twice. Remove one row "
                f"or set allow_duplicates: true"
            )


def check_commas(df: pd.DataFrame, csv: Union[str, os.PathLike]) -> None:
    """In a task not declared multi-label, a used label containing ``,`` is an error naming the row."""
    used = (df["split"] != "") & df["label"].str.contains(",", regex=False, na=False)
    for i in used.to_numpy().nonzero()[0]:
        raise MetadataError(
            f"Label {df['label'].iloc[i]!r} in {where(csv, int(df['index'].iloc[i]))} contains ',' but the task is "
            f"not declared multi-label; declare it (task_def: {{multilabel: true}} or 'multilabel: true' in its "
            f"task YAML) if ',' joins class names, or fix the label"
        )


def split_labels(label: str) -> list[str]:
    """Class names of one label cell (comma-joined for multi-label)."""
    return [s.strip() for s in str(label).split(",") if s.strip()]


def label_map_function(label_map: Union[str, Mapping]) -> tuple[Callable[[str], Optional[str]], str]:
    """(class name → new name or None, description) of a ``label_map``; ``ValueError`` / ``TypeError`` for
    an unknown named mapping or another type."""
    if isinstance(label_map, str):
        if label_map not in LABEL_MAPS:
            raise ValueError(f"Unknown label_map {label_map!r}; named mappings: {sorted(LABEL_MAPS)} (or a dict)")
        return LABEL_MAPS[label_map], label_map
    if isinstance(label_map, Mapping):
        table = {str(k).strip(): (None if v is None else str(v)) for k, v in label_map.items()}
        return (lambda s: table.get(s, s)), "dict"
    raise TypeError(f"label_map must be a dict or one of {sorted(LABEL_MAPS)}, got {type(label_map).__name__}")


def apply_label_map(
    labels: pd.Series,
    label_map: Union[str, Mapping, None],
    csv: Union[str, os.PathLike],
    used: Optional[pd.Series] = None,
) -> pd.Series:
    """Map label cells (each class name of a multi-label cell separately).

    Returns the mapped labels; a dict value ``None`` yields ``None`` (row dropped by the caller). Only
    rows where ``used`` is True are mapped (others are returned unchanged). Errors name the CSV row.
    """
    if label_map is None:
        return labels
    fn, name = label_map_function(label_map)
    out = labels.copy().astype(object)
    for i, lab in enumerate(labels):
        if used is not None and not used.iloc[i]:
            continue
        parts = split_labels(lab)
        try:
            mapped = [fn(p) for p in parts]
        except Exception as e:
            raise MetadataError(f"label_map {name!r} cannot map label {lab!r} in {where(csv, i)}: {e}") from None
        if any(m is None for m in mapped):
            out.iloc[i] = None
        else:
            out.iloc[i] = ",".join(dict.fromkeys(mapped))  # dedupe (merged classes), keep order
    return out


def _sort_key(labels: Sequence[str]):
    try:
        [int(x) for x in labels]
        return lambda x: (int(x), x)
    except ValueError:
        return None


def class_list(train_labels: Sequence[str], multilabel: bool) -> list[str]:
    """Sorted unique class names of the train labels (numeric order when all are integers)."""
    names: set[str] = set()
    for lab in train_labels:
        names.update(split_labels(lab) if multilabel else [str(lab).strip()])
    names = sorted(names)
    key = _sort_key(names)
    return sorted(names, key=key) if key else names


def check_labels(df: pd.DataFrame, classes: Sequence[str], multilabel: bool, csv: Union[str, os.PathLike]) -> None:
    """Every used valid/test (and ``none``) row must only carry classes of the train split (error names
    the row)."""
    known = set(classes)
    for i, (lab, split) in enumerate(zip(df["label"], df["split"])):
        if split in ("", "train"):
            continue
        parts = split_labels(lab) if multilabel else [str(lab).strip()]
        bad = [p for p in parts if p not in known]
        if bad:
            raise MetadataError(
                f"Label {', '.join(map(repr, bad))} of {split} file {df['file_name'].iloc[i]!r} in "
                f"{where(csv, df['index'].iloc[i])} is not a class of the train split "
                f"(train classes: {list(classes)})"
            )


def read_metadata(
    csv: Union[str, os.PathLike],
    *,
    folds: int = 0,
    fold: int = 1,
    label_map: Union[str, Mapping, None] = None,
    multilabel: bool = False,
    allow_duplicates: bool = False,
    unsplit: bool = False,
) -> tuple[pd.DataFrame, list[str], bool]:
    """Parse and check a metadata CSV (module docstring).

    Args:
        csv: the metadata CSV.
        folds, fold: fold task settings (:func:`assign_splits`).
        label_map: relabelling (:func:`apply_label_map`).
        multilabel: the task is declared multi-label (labels may join class names with ``,``).
        allow_duplicates: keep a file listed twice in one split (each row counts).
        unsplit: rows without a split become split ``none`` (used) instead of unused.
    Returns:
        (table with columns ``index, file_name, label, split`` — all CSV rows, unused ones with
        split ``""`` —, class list, multilabel flag).
    """
    raw = read_csv(csv)
    split = assign_splits(raw, csv, folds=folds, fold=fold)
    if unsplit:
        split = split.where(split != "", NO_SPLIT)
    df = pd.DataFrame(
        {
            "index": range(len(raw)),
            "file_name": raw["file_name"].astype(str).str.strip(),
            "label": raw["label"].astype(str).str.strip(),
            "split": split.to_numpy(),
        }
    )
    used = df["split"] != ""
    df["label"] = apply_label_map(df["label"], label_map, csv, used=used)
    dropped = df["label"].isna()
    df.loc[dropped, "split"] = ""
    used = df["split"] != ""
    for i in (used & ((df["label"] == "") | (df["file_name"] == ""))).to_numpy().nonzero()[0]:
        what = "file_name" if df["file_name"].iloc[i] == "" else "label"
        raise MetadataError(f"Empty {what} in {where(csv, int(i))}")
    check_file_names(df, csv)
    if not multilabel:
        check_commas(df, csv)
    check_duplicates(df, csv, allow_duplicates)
    classes = class_list(df.loc[df["split"] == "train", "label"].tolist(), multilabel)
    if not classes:
        raise MetadataError(
            f"Metadata CSV {csv} has no train rows, so there is no class list (used splits: "
            f"{sorted(set(df.loc[used, 'split']))})"
        )
    check_labels(df, classes, multilabel, csv)
    return df, classes, bool(multilabel)
