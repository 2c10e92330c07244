"""Reading a neuron-statistics run folder ``<out>/<task>_<suffix>/`` (design §5).

Files read here:

* ``over_zero.pt`` — float32 ``[L, N, C]`` activation probabilities; NaN = neuron absent (ragged sites).
* ``classes.txt`` — one class name per line, index order (``C`` lines).
* ``stats.pt`` — dict with at least ``count`` int64 ``[L, N, C]``, ``n_tokens`` int64 ``[C]``,
  ``n_clips`` int64 ``[C]``, ``act_sum`` float64 ``[L, N]``, ``sites`` list[str], ``classes`` list[str];
  optionally ``site_neurons`` list[int].
* ``manifest.json`` — provenance (config, checkpoint sha256, ...); read as a plain dict.
* ``neurons.pt`` — written by ``python -m analysis identify`` (class → layer → LongTensor).

Every reader raises ``ValueError``/``FileNotFoundError`` naming the file and the problem.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from analysis.aape import absent_neurons

OVER_ZERO = "over_zero.pt"
CLASSES = "classes.txt"
STATS = "stats.pt"
MANIFEST = "manifest.json"
NEURONS_PT = "neurons.pt"
NEURONS_CSV = "neurons.csv"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (is {path.parent} a neuron-statistics run folder?)")
    return path


def _load_torch(path: Path) -> Any:
    try:
        return torch.load(_need(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # corrupt file or unexpected pickled objects
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True): {e}") from e


def read_classes(run_dir: str | Path) -> list[str]:
    """Class names from ``classes.txt`` (trailing empty lines ignored; empty or duplicate names refused)."""
    path = Path(run_dir) / CLASSES
    lines = _need(path).read_text(encoding="utf-8").splitlines()
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
    t = _load_torch(path)
    if not isinstance(t, Tensor) or t.dim() != 3:
        raise ValueError(f"{path}: expected a tensor [L, N, C], got {type(t).__name__} "
                         f"{tuple(t.shape) if isinstance(t, Tensor) else ''}")
    t = t.float()
    fin = t[~torch.isnan(t)]
    if fin.numel() and (fin.min() < 0 or fin.max() > 1):
        raise ValueError(f"{path}: probabilities outside [0, 1] (range {fin.min().item()}..{fin.max().item()})")
    return t


def read_stats(run_dir: str | Path) -> dict[str, Any]:
    """``stats.pt`` dict (checked: the keys of design §10 with consistent shapes)."""
    path = Path(run_dir) / STATS
    s = _load_torch(path)
    if not isinstance(s, dict):
        raise ValueError(f"{path}: expected a dict, got {type(s).__name__}")
    missing = [k for k in ("count", "n_tokens", "n_clips", "sites", "classes") if k not in s]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
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


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` as a dict ({} when the file is absent)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
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
            raise ValueError(f"{d / STATS}: count shape {tuple(st['count'].shape)} != over_zero "
                             f"{tuple(oz.shape)}")
        if [str(c) for c in st["classes"]] != classes:
            raise ValueError(f"{d / STATS}: classes differ from {d / CLASSES}")
    man = read_manifest(d)
    return Run(path=d, over_zero=oz, classes=classes, manifest=man, stats=st,
               task=task_of(d, man, suffix), suffix=suffix)


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
    obj = _load_torch(path)
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
            raise ValueError(f"runs {a.path} and {b.path} come from different models/sites: {key} differs "
                             f"({_short(ia[key])} vs {_short(ib[key])}); cross-task overlap needs the same "
                             f"neurons")


def _short(x: Any, n: int = 120) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."
