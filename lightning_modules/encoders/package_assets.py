"""Weight files shipped inside installed wheels, located without importing the package.

The audio-model wheels (torchfcpe, resemblyzer, silero-vad, ...) pull torchaudio when imported; the
project installs them ``--no-deps`` and reads only their weight files, found on ``sys.path`` with
:func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


def package_dir(package: str) -> Path | None:
    """Folder of the installed top-level ``package`` (None when it is not installed). Never imports it."""
    try:
        spec = importlib.util.find_spec(package)
    except ValueError:  # a module object without a spec sits in sys.modules: search the path instead
        spec = importlib.machinery.PathFinder.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: str, relative: str, install_hint: str, what: str) -> Path:
    """Path of ``<package folder>/<relative>``.

    Raises:
        FileNotFoundError: the package is not installed, or the file is missing from it; the message
            says ``what`` needs it and how to install it (``install_hint``).
    """
    folder = package_dir(package)
    if folder is None:
        raise FileNotFoundError(
            f"{what} needs the {package} package (weights only, it is never imported); install it with "
            f"`{install_hint}` (the Makefile does this)"
        )
    path = folder / relative
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weight file {path} is missing; reinstall with `{install_hint}`")
    return path


def shape_mismatches(
    weights: Mapping[str, Any], expected: Mapping[str, Sequence[int]], name_of: Callable[[str], str], label: str
) -> list[str]:
    """``"<their name>: <label> (shape), model (shape)"`` for every tensor of ``weights`` (our names) whose
    shape is not ``expected[name]``; ``name_of`` maps our name to the file's."""
    return [
        f"{name_of(k)}: {label} {tuple(v.shape)}, model {tuple(expected[k])}"
        for k, v in weights.items()
        if tuple(v.shape) != tuple(expected[k])
    ]


def refuse_mismatch(
    what: str, missing: Sequence[str], unexpected: Sequence[str], bad: Sequence[str], verb: str = "does"
) -> None:
    """One ``KeyError`` listing every problem of a weight file against the architecture (``what`` names the
    file; ``verb``: ``do`` after a plural), or nothing when there is none."""
    if missing or unexpected or bad:
        parts = [f"missing keys {list(missing)}"] if missing else []
        parts += [f"unexpected keys {list(unexpected)}"] if unexpected else []
        parts += [f"shape mismatches {list(bad)}"] if bad else []
        raise KeyError(f"{what} {verb} not match the architecture: " + "; ".join(parts))
