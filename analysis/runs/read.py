"""Readers of aape's outputs (file names: :mod:`analysis.runs.layout`).

Every ``torch.load`` of the project happens here, in :func:`load_tensor_file`: run-folder files, probe
and Lightning checkpoints and the encoders' weight files. It always uses ``weights_only=True`` (tensors
and plain containers only, plus the explicit allow-list a format needs, e.g. ``argparse.Namespace`` for
M2D training checkpoints), so a file cannot run code when read. Every reader raises ``ValueError`` /
``FileNotFoundError`` naming the file and the problem (:class:`UnreadableFileError` for a file that is
not a readable PyTorch file: text, truncated, corrupt; :class:`UnsafeFileError` for one holding other
pickled objects).
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from analysis.aape import absent_neurons
from analysis.runs.layout import (
    ABLATION_CONDITIONS_JSON,
    ABLATION_CONFUSION_CSV,
    CLASSES,
    FEATURES,
    GTS,
    INDEX,
    INDEX_COLUMNS,
    INDEX_SPLITS,
    MANIFEST,
    NEURONS_CSV,
    NEURONS_JSON,
    NEURONS_PT,
    OVER_ZERO,
    PROBE_RESULTS,
    STABILITY_CSV,
    STATS,
    TOP_CLIPS,
    tuning_csv,
    tuning_pt,
)
from analysis.runs.layout import SAE_FILE, SAE_METRICS_COLUMNS, SAE_METRICS_CSV


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (is {path.parent} a neuron-statistics run folder?)")
    return path


class UnreadableFileError(ValueError):
    """A file that is not a readable PyTorch file (text, empty, truncated, corrupt); the message names it."""


class UnsafeFileError(UnreadableFileError):
    """A PyTorch file holding pickled objects other than tensors, plain containers and the allow-list:
    loading it could run code, so it is refused. ``detail`` names the offending global."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


_ZIP_MAGIC = b"PK\x03\x04"


#: How torch's weights-only unpickler words a refused global, across the supported torch versions (2.4 ..
#: 2.14 at least): "Unsupported global: GLOBAL builtins.eval was not an allowed global by default" (every
#: version), "Trying to load unsupported GLOBAL posix.system whose module posix is blocked" (2.5+, the
#: block-listed modules os/posix/nt/subprocess/sys/builtins...), and "Unsupported class posix.system" (the
#: oldest). Group 1 is the dotted name.
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL|Unsupported class)\s+([\w.<>]+)")


def refused_global(message: str) -> str | None:
    """``"GLOBAL module.name"`` when ``message`` (of torch's weights-only unpickler) says it refused that
    global, else None.

    >>> refused_global("Trying to load unsupported GLOBAL posix.system whose module posix is blocked.")
    'GLOBAL posix.system'
    >>> refused_global("Unsupported global: GLOBAL eval was not an allowed global by default. Please use")
    'GLOBAL eval'
    >>> refused_global("Unsupported class nt.system") , refused_global("invalid load key, 'x'.")
    ('GLOBAL nt.system', None)
    """
    m = _REFUSED_GLOBAL.search(message)
    return f"GLOBAL {m.group(1).rstrip('.')}" if m else None


def _unpickler_complaint(message: str) -> str | None:
    """What torch's weights-only unpickler refused (``GLOBAL module.name`` or its own words), or None
    when the failure did not come from it."""
    detail = refused_global(message)
    if detail:
        return detail
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", message, flags=re.S)
    return " ".join(m.group(1).split())[:160] if m else None


def refusal_message(
    path: str | Path, detail: str, allowed: str = "tensors and plain containers", hint: str = ""
) -> str:
    """The one wording of every refused file: ``<path>: refusing to load it: it holds pickled objects
    other than <allowed> (GLOBAL ...); loading it could run code[; hint]``."""
    what = (
        f"pickled objects other than {allowed}"
        if detail.startswith("GLOBAL")
        else f"pickle content outside {allowed}, or is corrupt"
    )
    return f"{path}: refusing to load it: it holds {what} ({detail}); loading it could run code" + (
        f"; {hint}" if hint else ""
    )


def _diagnose(path: Path, error: BaseException) -> str:
    """What is wrong with a file torch.load could not read, in words (from its first bytes and the error)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    first = " ".join(str(error).split(". This is an internal")[0].split())[:200]
    if size == 0:
        return "empty file (0 bytes)"
    if head.startswith(_ZIP_MAGIC):
        return f"truncated or corrupt PyTorch zip archive ({size} bytes): {first}"
    if head[:1] == b"\x80":
        return f"truncated or corrupt pickle/legacy PyTorch file ({size} bytes): {first}"
    try:
        text = head.decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
            return f"not a PyTorch file: it holds text ({text[:40]!r}...)"
    except UnicodeDecodeError:
        pass
    return f"not a PyTorch file (starts with bytes {head[:8].hex()}): {first}"


def load_tensor_file(path: str | Path, *, allow: Sequence[type] = (), trust: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: the one loader of every tensor file and checkpoint.

    Args:
        path: the file.
        allow: extra classes the file's format needs (passed to ``torch.serialization.safe_globals``).
        trust: load with ``weights_only=False`` (arbitrary code can run; only for a file the user
            explicitly trusts, e.g. an encoder's ``trust_checkpoint: true``); warns.
    Raises:
        FileNotFoundError: no such file. UnsafeFileError: pickled objects outside tensors, containers
        and ``allow``. UnreadableFileError: anything else that cannot be read (text, empty, truncated,
        corrupt); the message names the file and the problem.
    """
    path = Path(path)
    _need(path)
    if trust:
        warnings.warn(f"Loading {path} with weights_only=False (trusted): it may run arbitrary code", stacklevel=2)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise UnreadableFileError(f"{path}: cannot be read: {_diagnose(path, e)}") from e
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_complaint(str(e))
        if detail is not None and not _diagnose(path, e).startswith("not a PyTorch file"):
            raise UnsafeFileError(refusal_message(path, detail), detail) from e
        raise UnreadableFileError(f"{path}: cannot be read: {_diagnose(path, e)}") from e
    except Exception as e:  # corrupt zip, text, truncated pickle, ...
        raise UnreadableFileError(f"{path}: cannot be read: {_diagnose(path, e)}") from e


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (which must exist); ``ValueError`` naming it when it is not UTF-8."""
    try:
        return _need(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e


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


def _load_dict(path: Path, required: Sequence[str]) -> dict[str, Any]:
    """A tensor file holding a dict with (at least) the ``required`` keys; errors name the file."""
    d = load_tensor_file(path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict, got {type(d).__name__}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return d


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


def read_neurons(run_dir: str | Path, num_classes: int, num_layers: int) -> list[list[Tensor]]:
    """``neurons.pt`` (LAPE list), padded with empty classes to ``num_classes`` (a ``lape``-mode list
    drops trailing empty classes)."""
    path = Path(run_dir) / NEURONS_PT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `python -m analysis identify --run {run_dir}` first")
    obj = load_tensor_file(path)
    if not isinstance(obj, list) or len(obj) > num_classes:
        raise ValueError(f"{path}: expected a list of at most {num_classes} classes")
    out: list[list[Tensor]] = []
    for c, layers in enumerate(obj):
        if not isinstance(layers, list) or len(layers) != num_layers:
            raise ValueError(f"{path}: class {c} must be a list of {num_layers} tensors")
        out.append([torch.as_tensor(t, dtype=torch.long) for t in layers])
    empty = [torch.zeros(0, dtype=torch.long) for _ in range(num_layers)]
    out += [list(empty) for _ in range(num_classes - len(out))]
    return out


@dataclass
class Features:
    """The embeddings of a run folder: ``features`` float32 ``[clips, E]``, ``gts`` int64 ``[clips]`` or
    float32 multi-hot ``[clips, C]``, ``rows`` split → sorted LongTensor of feature rows (train, valid,
    test and ``none``: clips without a split, which the probe never uses), ``classes``."""

    features: Tensor
    gts: Tensor
    rows: dict[str, Tensor]
    classes: list[str]


def read_features(run_dir: str | Path) -> Features:
    """``features.pt``, ``gts.pt``, ``index.csv`` and ``classes.txt`` of a run folder, checked against
    each other (row counts, label range, finite values, splits)."""
    d = Path(run_dir)
    for f in (FEATURES, GTS, INDEX, CLASSES):
        if not (d / f).exists():
            raise FileNotFoundError(f"{d / f} not found (a statistics run folder with embeddings is needed)")
    classes = read_classes(d)
    feats, gts = load_tensor_file(d / FEATURES), load_tensor_file(d / GTS)
    if not isinstance(feats, Tensor) or feats.dim() != 2:
        raise ValueError(
            f"{d / FEATURES}: expected a float tensor [N, E], got {getattr(feats, 'shape', type(feats).__name__)}"
        )
    if not torch.isfinite(feats).all():
        bad = (~torch.isfinite(feats)).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{d / FEATURES}: non-finite values in rows {bad}")
    N, C = feats.shape[0], len(classes)
    if not isinstance(gts, Tensor):
        raise ValueError(f"{d / GTS}: expected a tensor, got {type(gts).__name__}")
    if gts.shape[0] != N:
        raise ValueError(f"{d / GTS}: {gts.shape[0]} rows, {FEATURES} has {N}")
    if gts.dim() == 1:
        gts = gts.long()
        if gts.numel() and (gts.min() < 0 or gts.max() >= C):
            raise ValueError(f"{d / GTS}: labels outside 0..{C - 1} ({CLASSES} has {C} classes)")
    elif gts.dim() == 2:
        if gts.shape[1] != C:
            raise ValueError(f"{d / GTS}: multi-hot width {gts.shape[1]}, {CLASSES} has {C} classes")
        gts = gts.float()
    else:
        raise ValueError(f"{d / GTS}: expected [N] or [N, C], got {tuple(gts.shape)}")
    idx = pd.read_csv(d / INDEX)
    missing = {"row", "split"} - set(idx.columns)
    if missing:
        raise ValueError(f"{d / INDEX}: missing columns {sorted(missing)} (has {list(idx.columns)})")
    rows = idx["row"].to_numpy()
    if sorted(rows.tolist()) != list(range(N)):
        raise ValueError(f"{d / INDEX}: column row must list 0..{N - 1} once each ({FEATURES} rows)")
    splits = idx["split"].astype(str).to_numpy()
    bad = sorted(set(splits) - set(INDEX_SPLITS))
    if bad:
        i = int(next(k for k, s in enumerate(splits) if s in bad))
        raise ValueError(f"{d / INDEX}: row {i}: split {splits[i]!r} not one of {INDEX_SPLITS}")
    by_split = {s: torch.as_tensor(sorted(rows[splits == s].tolist()), dtype=torch.long) for s in INDEX_SPLITS}
    return Features(features=feats.float(), gts=gts, rows=by_split, classes=classes)


def read_ranking(run_dir: str | Path) -> dict[tuple[int, int], float]:
    """(layer, neuron) → AAPE rank from ``neurons.csv`` (column ``rank``, else ``entropy``; lower = better)."""
    p = Path(run_dir) / NEURONS_CSV
    if not p.exists():
        raise FileNotFoundError(f"{p} not found (needed for the top-k grid)")
    df = pd.read_csv(p)
    key = "rank" if "rank" in df.columns else "entropy" if "entropy" in df.columns else None
    if key is None or not {"layer", "neuron"} <= set(df.columns):
        raise ValueError(f"{p}: needs columns layer, neuron and rank (or entropy); has {list(df.columns)}")
    return {(int(r.layer), int(r.neuron)): float(getattr(r, key)) for r in df.itertuples()}


def count_selected(run_dir: str | Path) -> int | None:
    """Rows of ``neurons.csv`` (neurons selected by lowest entropy), None when the file is absent."""
    p = Path(run_dir) / NEURONS_CSV
    return len(pd.read_csv(p)) if p.is_file() else None


def selection_warnings(run_dir: str | Path) -> list[str]:
    """Warnings the AAPE selection recorded in ``neurons.json`` (e.g. saturated quantiles); [] if absent."""
    p = Path(run_dir) / NEURONS_JSON
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: invalid JSON: {e}") from e
    return [str(w) for w in data.get("warnings", [])]


def read_stability(run_dir: str | Path) -> pd.DataFrame | None:
    """``stability.csv`` of a run folder (class names as text), None when the stability step did not run;
    the columns the report uses are checked."""
    p = Path(run_dir) / STABILITY_CSV
    if not p.is_file():
        return None
    t = read_table(p)
    missing = {"class", "mean_jaccard", "jaccard_low", "jaccard_high", "replicates"} - set(t.columns)
    if missing:
        raise ValueError(f"{p}: missing columns {sorted(missing)} (has {list(t.columns)})")
    return t


def read_probe_results(probe_dir: str | Path) -> pd.DataFrame:
    """``probe_results.csv`` (seed rows, then ``mean`` and ``std``); column ``seed`` as text."""
    csv = Path(probe_dir) / PROBE_RESULTS
    if not csv.exists():
        raise FileNotFoundError(f"{csv} not found; fit the probe first (python -m analysis probe)")
    return pd.read_csv(csv, dtype={"seed": str})


def best_checkpoint(probe_dir: str | Path) -> Path:
    """The checkpoint of the seed with the highest validation score in ``probe_results.csv`` (ties: the
    first seed listed). Chosen on validation, never on test."""
    d = Path(probe_dir)
    df = read_probe_results(d)
    df = df[~df["seed"].isin(["mean", "std"])]
    if df.empty:
        raise ValueError(f"{d / PROBE_RESULTS}: no seed rows")
    best = df.iloc[int(df["val_score"].to_numpy().argmax())]
    p = d / str(best["checkpoint"])
    if not p.exists():
        raise FileNotFoundError(f"{p} (listed in {d / PROBE_RESULTS}) not found")
    return p


def read_checkpoint_epoch(path: str | Path) -> int:
    """The ``epoch`` of a Lightning checkpoint (read with ``weights_only=True``)."""
    return int(read_lightning_checkpoint(path)["epoch"])


def read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint (``weights_only=True``), checked: a dict with ``state_dict`` (name →
    tensor), ``epoch`` and, if present, ``hyper_parameters`` as a dict."""
    ckpt = load_tensor_file(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a Lightning checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in ("state_dict", "epoch") if k not in ckpt]
    if missing:
        raise ValueError(
            f"{path}: not a Lightning checkpoint (no {', '.join(map(repr, missing))}; "
            f"keys: {sorted(map(str, ckpt))[:10]})"
        )
    sd = ckpt["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise ValueError(f"{path}: 'state_dict' must map parameter names to tensors")
    if not isinstance(ckpt.get("hyper_parameters", {}), Mapping):
        raise ValueError(f"{path}: 'hyper_parameters' must be a mapping")
    return ckpt


def read_table(path: str | Path) -> pd.DataFrame:
    """A result CSV whose text columns may hold class names such as ``NA`` or ``None`` (read as text; only
    empty cells are missing values)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found")
    t = pd.read_csv(p, keep_default_na=False, na_values=[""])
    if "class" in t.columns:
        t["class"] = t["class"].astype(str)
    return t


#: Columns every tuning table has (``tuning/<dimension>.csv``).
TUNING_REQUIRED = ("unit", "site", "preferred_value", "bandwidth", "selectivity", "layer")


def read_tuning_table(tuning_dir: str | Path, dimension: str) -> pd.DataFrame:
    """``<tuning_dir>/<dimension>.csv`` (checked: the tuning columns are there)."""
    p = Path(tuning_dir) / tuning_csv(dimension)
    t = read_table(p)
    missing = [c for c in TUNING_REQUIRED if c not in t.columns]
    if missing:
        raise ValueError(f"{p}: missing columns {missing}")
    t["site"] = t["site"].astype(str)
    return t


def read_tuning_curves(tuning_dir: str | Path, dimension: str) -> dict[str, Any]:
    """``<tuning_dir>/<dimension>.pt`` (checked: ``values`` [V] and ``p_active`` [L, N, V] agree)."""
    p = Path(tuning_dir) / tuning_pt(dimension)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found (written by the tuning stage, python -m analysis tuning)")
    d = _load_dict(p, ("values", "p_active", "sites", "site_neurons", "dimension"))
    V = len(d["values"])
    if not isinstance(d["p_active"], Tensor) or d["p_active"].dim() != 3 or d["p_active"].shape[-1] != V:
        raise ValueError(f"{p}: 'p_active' must be a tensor [L, N, {V}]")
    return d


def model_identity(run: Run) -> dict[str, Any]:
    """What must agree for two runs to share (layer, neuron) indices: sites, neurons per site, padded
    shape, and when both manifests record them, the encoder class, encoder name and checkpoint sha256
    (the full model config is not compared: paths may be spelled differently for the same weights)."""
    ident: dict[str, Any] = {
        "sites": run.sites,
        "site_neurons": run.site_neurons,
        "shape": tuple(run.over_zero.shape[:2]),
    }
    m = run.manifest
    for key in ("encoder", "encoder_name", "checkpoint_sha256"):
        if key in m:
            ident[key] = m[key]
    return ident


def check_same_model(a: Run, b: Run) -> None:
    """Raise ``ValueError`` naming both folders if ``a`` and ``b`` come from different models/sites."""
    ia, ib = model_identity(a), model_identity(b)
    for key in sorted(set(ia) & set(ib)):
        if ia[key] != ib[key]:
            raise ValueError(
                f"runs {a.path} and {b.path} come from different models/sites: {key} differs "
                f"({_short(ia[key])} vs {_short(ib[key])}); cross-task overlap needs the same "
                f"neurons"
            )


def _short(x: Any, n: int = 120) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


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


# -- SAE folders -------------------------------------------------------------------------------------
_SAE_WEIGHTS = ("W_enc", "b_enc", "W_dec", "b_dec")


def read_sae(path: str | Path) -> dict[str, Any]:
    """An ``sae.pt`` file (a path to the file or to its SAE folder): the four weight tensors and ``config``
    (checked: shapes agree with ``config.d_in`` / ``config.d_sae``). Errors name the file."""
    p = Path(path)
    p = p / SAE_FILE if p.is_dir() else p
    d = _load_dict(p, _SAE_WEIGHTS + ("config",))
    cfg = d["config"]
    if not isinstance(cfg, dict) or not {"d_in", "d_sae", "architecture", "k", "site"} <= set(cfg):
        raise ValueError(f"{p}: 'config' must be a dict with d_in, d_sae, architecture, k and site")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    want = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for k, shape in want.items():
        if not isinstance(d[k], Tensor) or tuple(d[k].shape) != shape:
            got = tuple(d[k].shape) if isinstance(d[k], Tensor) else type(d[k]).__name__
            raise ValueError(f"{p}: '{k}' has shape {got}, expected {shape} (d_in={d_in}, d_sae={d_sae})")
    return d


def read_sae_metrics(sae_dir: str | Path) -> pd.DataFrame:
    """``metrics.csv`` of an SAE folder (checked: the contract's columns)."""
    p = Path(sae_dir) / SAE_METRICS_CSV
    t = read_table(p)
    missing = [c for c in SAE_METRICS_COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"{p}: missing columns {missing}")
    return t
