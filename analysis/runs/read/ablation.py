"""Readers of an ablation folder: ``ablation_conditions.json`` and ``ablation_confusion.csv``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.runs.layout import ABLATION_CONDITIONS_JSON, ABLATION_CONFUSION_CSV
from analysis.runs.read.loaders import read_table


def read_ablation_conditions(ablation_dir: str | Path) -> dict[str, Any]:
    """``ablation_conditions.json`` (classes, gain, mode, seed, run_dir and per condition its neurons)."""
    p = Path(ablation_dir) / ABLATION_CONDITIONS_JSON
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found (written by the ablation with ablation.csv)")
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: invalid JSON: {e}") from e
    if not isinstance(rec, dict) or not isinstance(rec.get("conditions"), list) or "classes" not in rec:
        raise ValueError(f"{p}: expected an object with 'classes' and a 'conditions' list")
    return rec


def read_ablation_confusion(ablation_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """``ablation_confusion.csv`` and the class list of ``ablation_conditions.json`` (index order) of an
    ablation folder; columns and class names are checked."""
    d = Path(ablation_dir)
    csv, rec = d / ABLATION_CONFUSION_CSV, d / ABLATION_CONDITIONS_JSON
    t = read_table(csv)
    missing = {"condition", "true", "predicted", "count"} - set(t.columns)
    if missing:
        raise ValueError(f"{csv}: missing columns {sorted(missing)} (has {list(t.columns)})")
    classes = [str(c) for c in read_ablation_conditions(d)["classes"]]
    for col in ("true", "predicted"):
        t[col] = t[col].astype(str)
        bad = sorted(set(t[col]) - set(classes))
        if bad:
            raise ValueError(f"{csv}: column {col} holds {bad[:5]}, not classes of {rec}")
    return t, classes
