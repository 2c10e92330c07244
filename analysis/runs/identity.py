"""What a statistics run folder was made from, and the check that whoever consumes it agrees.

A run folder's ``manifest.json`` records its **identity**:

=====================  ==========================================================================
``encoder``            encoder class name
``encoder_name``       the encoder's ``name`` (the run folder suffix by default)
``checkpoint_sha256``  sha256 of the encoder's weights (:func:`weights_sha256`; ``null``: random init)
``sites``              neuron sites, in order; ``site_neurons`` neurons per site
``task``               the EVAR task that was read
``classes``            the class list (``classes.txt``)
``data_list_sha256``   sha256 of the predicted clips (``index, file_name, label, split``)
``tokens``, ``level``, ``splits``  the counting settings
=====================  ==========================================================================

A consumer (a pipeline stage, the ablation's encoder, a probe fitted on the folder's embeddings) states
the values it expects and :func:`check_run` raises :class:`RunMismatchError` naming ``manifest.json``,
each differing key and both values. A folder made from another model or other data is refused instead
of being analysed under the wrong name. Two run folders whose neurons are compared (cross-task overlap)
must come from one model: :func:`check_same_model` compares their :func:`model_identity`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from analysis.runs.atomic import sha256_file
from analysis.runs.layout import CLASSES, MANIFEST
from analysis.runs.read.statistics_folder import Run, read_classes, read_manifest

#: Keys that say which model made a run folder.
MODEL_KEYS = ("encoder", "encoder_name", "checkpoint_sha256", "sites", "site_neurons")
#: Keys that say which data a run folder counted.
DATA_KEYS = ("task", "classes", "data_list_sha256")
#: Keys of the counting settings.
SETTING_KEYS = ("tokens", "level", "splits")
IDENTITY_KEYS = MODEL_KEYS + DATA_KEYS + SETTING_KEYS

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


class RunMismatchError(ValueError):
    """A run folder was made from another model, task, class list, data list or counting setting than
    its consumer expects."""


def file_sha256(path: str | os.PathLike | None) -> str | None:
    """sha256 of a weight file (cached per path, size and mtime); None when ``path`` is None or not a file."""
    if path is None or not os.path.isfile(str(path)):
        return None
    st = os.stat(path)
    key = (os.path.abspath(str(path)), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


#: Weight files of a model folder (``model_path`` of a Hugging Face encoder) that its identity hashes.
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def weights_sha256(encoder: Any) -> str | None:
    """sha256 of an encoder's weights: its ``checkpoint_path`` file, else the weight files of its
    ``model_path`` folder (:data:`WEIGHT_PATTERNS`, name and sha256 of each, sorted); None = random init."""
    path = getattr(encoder, "checkpoint_path", None)
    if path is not None:
        return file_sha256(path)
    folder = getattr(encoder, "model_path", None)
    if folder is None or not os.path.isdir(str(folder)):
        return None
    files = sorted({f for pattern in WEIGHT_PATTERNS for f in Path(folder).glob(pattern) if f.is_file()})
    if not files:
        return None
    listing = "".join(f"{f.name} {file_sha256(f)}\n" for f in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """The model keys (:data:`MODEL_KEYS`) of an encoder object (duck-typed: ``name``,
    ``checkpoint_path`` or ``model_path``, ``neuron_sites``, ``site_neurons``), as the statistics pass
    records them."""
    return {
        "encoder": type(encoder).__name__,
        "encoder_name": getattr(encoder, "name", None),
        "checkpoint_sha256": weights_sha256(encoder),
        "sites": [str(s) for s in encoder.neuron_sites],
        "site_neurons": [int(n) for n in encoder.site_neurons],
    }


def run_identity(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The identity keys a run folder records (``manifest.json`` plus ``classes.txt``); keys the manifest
    lacks are left out."""
    d = Path(run_dir)
    man = read_manifest(d)
    ident = {k: man[k] for k in IDENTITY_KEYS if k in man and k != "classes"}
    if (d / CLASSES).is_file():
        ident["classes"] = read_classes(d)
    return ident


def _norm(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_norm(v) for v in x]
    return x


def _show(x: Any, n: int = 100) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def model_identity(run: Run) -> dict[str, Any]:
    """What must agree for two runs to share (layer, neuron) indices: sites, neurons per site and padded
    shape (from the run's files), and the other model keys (:data:`MODEL_KEYS`: encoder class, encoder
    name, checkpoint sha256) when its manifest records them (the full model config is not compared: paths
    may be spelled differently for the same weights)."""
    ident: dict[str, Any] = {
        "sites": run.sites,
        "site_neurons": run.site_neurons,
        "shape": tuple(run.over_zero.shape[:2]),
    }
    ident.update({k: run.manifest[k] for k in MODEL_KEYS if k in run.manifest and k not in ident})
    return ident


def check_same_model(a: Run, b: Run) -> None:
    """Raise ``ValueError`` naming both folders if ``a`` and ``b`` come from different models/sites (a key of
    :func:`model_identity` both record differs)."""
    ia, ib = model_identity(a), model_identity(b)
    for key in sorted(set(ia) & set(ib)):
        if ia[key] != ib[key]:
            raise ValueError(
                f"runs {a.path} and {b.path} come from different models/sites: {key} differs "
                f"({_show(ia[key], 120)} vs {_show(ib[key], 120)}); cross-task overlap needs the same "
                f"neurons"
            )


def check_run(run_dir: str | os.PathLike, expected: Mapping[str, Any], *, consumer: str, require: bool = False) -> None:
    """Raise :class:`RunMismatchError` unless the run folder's identity equals ``expected`` on every key
    of ``expected``. ``require``: a key the manifest does not record (or no manifest at all) is an error
    too; otherwise it is not checked. ``consumer`` names who expects the values (in the message)."""
    d = Path(run_dir)
    man = d / MANIFEST
    if require and not man.is_file():
        raise RunMismatchError(
            f"{man}: not found, so the run folder cannot be checked against {consumer}; "
            f"it was not written by the statistics pass"
        )
    have = run_identity(d)
    problems = []
    for key, want in expected.items():
        if key not in have:
            if require:
                problems.append(f"{key} is not recorded (expected {_show(want)})")
            continue
        if _norm(have[key]) != _norm(want):
            problems.append(f"{key} is {_show(have[key])}, {consumer} expects {_show(want)}")
    if problems:
        raise RunMismatchError(
            f"{man}: run folder {d} was not made for {consumer}: "
            + "; ".join(problems)
            + ". It belongs to another model, task or data list: re-run its statistics "
            "or point to the right folder"
        )
