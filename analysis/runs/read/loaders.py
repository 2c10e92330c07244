"""The loaders every reader builds on: :func:`load_tensor_file` (the project's one ``torch.load``, always
``weights_only=True`` unless the user trusts the file), UTF-8 text and result CSVs. Errors name the file and
the problem (:class:`UnreadableFileError`, :class:`UnsafeFileError`)."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch


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


def _load_dict(path: Path, required: Sequence[str]) -> dict[str, Any]:
    """A tensor file holding a dict with (at least) the ``required`` keys; errors name the file."""
    d = load_tensor_file(path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict, got {type(d).__name__}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return d


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
