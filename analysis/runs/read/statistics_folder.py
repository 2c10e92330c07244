"""Readers of a statistics run folder: class names, ``over_zero.pt``, ``stats.pt``, ``top_clips.pt``,
``index.csv``, ``manifest.json``, the whole folder (:class:`Run`) and the run folders of an output folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from analysis.aape import absent_neurons
from analysis.runs.layout import CLASSES, INDEX, INDEX_COLUMNS, MANIFEST, OVER_ZERO, STATS, TOP_CLIPS
from analysis.runs.read.loaders import _load_dict, _need, _read_text, load_tensor_file


def read_classes(run_dir: str | Path) -> list[str]:
    """Class names from ``classes.txt`` (trailing empty lines ignored; empty or duplicate names refused)."""
    path = Path(run_dir) / CLASSES
    lines = _read_text(path).splitlines()
    while lines and lines[-1] == "":
        lines.pop()
    for i, name in enumerate(lines, 1):
        if name.strip() == "":
            raise ValueError(f"{path}: line {i} is empty")
    if len(set(lines)) != len(lines):
        dup = sorted({x for x in lines if lines.count(x) > 1})
        raise ValueError(f"{path}: duplicate class names {dup}")
    if not lines:
        raise ValueError(f"{path}: no classes")
    return lines


def read_over_zero(run_dir: str | Path) -> Tensor:
    """``over_zero.pt`` as float32 ``[L, N, C]`` (checked: 3-D, values in [0, 1] or NaN)."""
    path = Path(run_dir) / OVER_ZERO
    t = load_tensor_file(path)
    if not isinstance(t, Tensor) or t.dim() != 3:
        raise ValueError(
            f"{path}: expected a tensor [L, N, C], got {type(t).__name__} "
            f"{tuple(t.shape) if isinstance(t, Tensor) else ''}"
        )
    t = t.float()
    fin = t[~torch.isnan(t)]
    if fin.numel() and (fin.min() < 0 or fin.max() > 1):
        raise ValueError(f"{path}: probabilities outside [0, 1] (range {fin.min().item()}..{fin.max().item()})")
    return t


def read_stats(run_dir: str | Path) -> dict[str, Any]:
    """``stats.pt`` dict (checked: the required keys, with consistent shapes)."""
    path = Path(run_dir) / STATS
    s = _load_dict(path, ("count", "n_tokens", "n_clips", "sites", "classes"))
    count = s["count"]
    if not isinstance(count, Tensor) or count.dim() != 3:
        raise ValueError(f"{path}: 'count' must be a tensor [L, N, C]")
    L, N, C = count.shape
    for key, shape in (("n_tokens", (C,)), ("n_clips", (C,))):
        if tuple(s[key].shape) != shape:
            raise ValueError(f"{path}: '{key}' has shape {tuple(s[key].shape)}, expected {shape}")
    if len(s["sites"]) != L:
        raise ValueError(f"{path}: {len(s['sites'])} sites for L={L} layers of 'count'")
    if len(s["classes"]) != C:
        raise ValueError(f"{path}: {len(s['classes'])} classes for C={C} of 'count'")
    if "site_neurons" in s:
        sn = [int(x) for x in s["site_neurons"]]
        if len(sn) != L or max(sn) > N:
            raise ValueError(f"{path}: site_neurons {sn} inconsistent with count [L={L}, N={N}]")
    return s


def read_top_clips(run_dir: str | Path) -> dict[str, Any]:
    """``top_clips.pt`` (format: :mod:`analysis.runs.layout`), checked: the four ``[L, N, K]`` tensors
    agree in shape and the site lists in length."""
    path = Path(run_dir) / TOP_CLIPS
    t = _load_dict(path, ("score", "index", "frame", "band", "sites"))
    shape = tuple(t["score"].shape) if isinstance(t["score"], Tensor) else None
    if shape is None or len(shape) != 3:
        raise ValueError(f"{path}: 'score' must be a tensor [L, N, K]")
    for k in ("index", "frame", "band"):
        if not isinstance(t[k], Tensor) or tuple(t[k].shape) != shape:
            raise ValueError(f"{path}: '{k}' must be a tensor of shape {shape}")
    if len(t["sites"]) != shape[0]:
        raise ValueError(f"{path}: {len(t['sites'])} sites for L={shape[0]}")
    return t


def read_index(run_dir: str | Path) -> pd.DataFrame:
    """``index.csv`` (``row,index,file_name,label,split``; labels and file names as text, ``index`` unique)."""
    path = _need(Path(run_dir) / INDEX)
    try:
        t = pd.read_csv(path, keep_default_na=False, dtype={"file_name": str, "label": str, "split": str})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:  # UnicodeDecodeError too
        raise ValueError(f"{path}: not a readable CSV ({type(e).__name__}: {e})") from e
    missing = [c for c in INDEX_COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {list(t.columns)})")
    if t["index"].duplicated().any():
        dup = t["index"][t["index"].duplicated()].tolist()[:5]
        raise ValueError(f"{path}: dataset index listed twice: {dup}")
    return t


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` as a dict ({} when the file is absent)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        m = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(m, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return m


@dataclass
class Run:
    """A run folder's contents. ``stats`` is None when not loaded/absent."""

    path: Path
    over_zero: Tensor
    classes: list[str]
    manifest: dict[str, Any]
    stats: dict[str, Any] | None = None
    task: str | None = None
    suffix: str | None = None
    _sites: list[str] | None = field(default=None, repr=False)

    @property
    def num_layers(self) -> int:
        return int(self.over_zero.shape[0])

    @property
    def sites(self) -> list[str]:
        """Site names (from stats.pt, else manifest ``sites``, else ``layer_<l>``)."""
        if self.stats is not None:
            return [str(x) for x in self.stats["sites"]]
        if isinstance(self.manifest.get("sites"), list):
            return [str(x) for x in self.manifest["sites"]]
        return [f"layer_{l}" for l in range(self.num_layers)]

    @property
    def site_neurons(self) -> list[int]:
        """Neurons per site (stats.pt ``site_neurons``, else inferred from the NaN pattern of over_zero)."""
        if self.stats is not None and "site_neurons" in self.stats:
            return [int(x) for x in self.stats["site_neurons"]]
        present = ~absent_neurons(self.over_zero)  # [L, N]
        return [int(present[l].sum()) for l in range(self.num_layers)]


def task_of(run_dir: str | Path, manifest: dict[str, Any] | None = None, suffix: str | None = None) -> str | None:
    """The run's task: manifest ``task`` (or ``config.data.init_args.task``), else the folder name
    without ``_<suffix>``; None if unknown."""
    m = manifest if manifest is not None else read_manifest(run_dir)
    if isinstance(m.get("task"), str):
        return m["task"]
    try:
        t = m["config"]["data"]["init_args"]["task"]
        if isinstance(t, str):
            return t
    except (KeyError, TypeError):
        pass
    name = Path(run_dir).name
    if suffix and name.endswith("_" + suffix):
        return name[: -len(suffix) - 1]
    return None


def read_run(run_dir: str | Path, *, stats: bool = True, suffix: str | None = None) -> Run:
    """Read a run folder; ``stats=True`` also loads ``stats.pt`` if present (required by stability).

    Checks that ``classes.txt``, ``over_zero.pt`` and ``stats.pt`` agree on shapes and class names.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: run folder not found")
    oz = read_over_zero(d)
    classes = read_classes(d)
    if len(classes) != oz.shape[-1]:
        raise ValueError(f"{d / CLASSES}: {len(classes)} classes but {d / OVER_ZERO} has C={oz.shape[-1]}")
    st = None
    if stats and (d / STATS).is_file():
        st = read_stats(d)
        if tuple(st["count"].shape) != tuple(oz.shape):
            raise ValueError(f"{d / STATS}: count shape {tuple(st['count'].shape)} != over_zero {tuple(oz.shape)}")
        if [str(c) for c in st["classes"]] != classes:
            raise ValueError(f"{d / STATS}: classes differ from {d / CLASSES}")
    man = read_manifest(d)
    return Run(
        path=d, over_zero=oz, classes=classes, manifest=man, stats=st, task=task_of(d, man, suffix), suffix=suffix
    )


def find_runs(out: str | Path, suffix: str) -> dict[str, Path]:
    """Task → run folder for every ``<out>/<task>_<suffix>/`` holding ``over_zero.pt`` (sorted by task)."""
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: output folder not found")
    found: dict[str, Path] = {}
    for d in sorted(root.iterdir()):
        if d.is_dir() and d.name.endswith("_" + suffix) and (d / OVER_ZERO).is_file():
            task = d.name[: -len(suffix) - 1]
            if task:
                found[task] = d
    return found
