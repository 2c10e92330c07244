"""Safe checkpoint loading shared by the encoders.

* :func:`load_checkpoint_file` reads a file through the project's one loader
  (:func:`analysis.runs.read.load_tensor_file`: ``weights_only=True``), allowing only
  ``argparse.Namespace`` as an extra global (the ``args`` of full M2D/MAE training checkpoints). A file
  holding any other pickled object is refused with :class:`UnsafeCheckpointError` unless
  ``trust_checkpoint=True`` (then it is loaded with ``weights_only=False``: arbitrary code can run). A
  file that is not a readable PyTorch file (text, truncated, corrupt) is an
  :class:`~analysis.runs.read.UnreadableFileError` naming it and the problem.
* :func:`extract_state_dict` finds the flat ``{name: Tensor}`` state dict in a loaded object.
* :func:`check_keys` raises :class:`CheckpointKeyError` listing missing / unexpected keys and naming
  the file.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from analysis.runs.read import UnsafeFileError, load_tensor_file, refusal_message

#: Globals allowed while unpickling with ``weights_only=True``.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


class UnsafeCheckpointError(UnsafeFileError, RuntimeError):
    """The file holds pickled objects that ``weights_only=True`` loading does not allow."""


class CheckpointKeyError(ValueError):
    """The state dict does not have exactly the expected keys."""


def load_checkpoint_file(path: str | Path, trust_checkpoint: bool = False) -> Any:
    """Load ``path`` on CPU.

    Tensors, plain containers and ``argparse.Namespace`` are accepted; anything else is refused
    (:class:`UnsafeCheckpointError`) unless ``trust_checkpoint`` is True."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        return load_tensor_file(path, allow=SAFE_GLOBALS)
    except UnsafeFileError as e:
        if not trust_checkpoint:
            raise UnsafeCheckpointError(
                refusal_message(
                    path,
                    e.detail,
                    allowed="tensors, containers and argparse.Namespace",
                    hint="pass trust_checkpoint=True only if you trust where the file comes from",
                ),
                e.detail,
            ) from e
    return load_tensor_file(path, trust=True)


def extract_state_dict(
    obj: Any, path: str | Path, container_keys: Iterable[str] = ("model", "state_dict")
) -> dict[str, Tensor]:
    """The flat ``{name: Tensor}`` state dict of a loaded checkpoint object: ``obj[k]`` for the first
    ``k`` of ``container_keys`` holding a mapping, else ``obj`` itself. Non-tensor values are an error."""
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"Checkpoint {path} holds a {type(obj).__name__}, expected a dict (state dict or training checkpoint)"
        )
    sd: Mapping = obj
    for k in container_keys:
        if isinstance(obj.get(k), Mapping):
            sd = obj[k]
            break
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise TypeError(
            f"Checkpoint {path}: state dict entries that are not named tensors: {bad[:10]}"
            + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        )
    return dict(sd)


def _fmt(keys: list[str], limit: int = 40) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_keys(expected: Iterable[str], got: Iterable[str], path: str | Path, optional: Iterable[str] = ()) -> None:
    """Raise :class:`CheckpointKeyError` unless ``got`` equals ``expected`` (keys in ``optional`` may
    be absent). The message lists every missing and unexpected key and names ``path``."""
    expected, got, optional = set(expected), set(got), set(optional)
    missing = sorted(expected - got - optional)
    unexpected = sorted(got - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        raise CheckpointKeyError(f"Checkpoint {path} does not match the model: " + "; ".join(parts))


def check_shapes(model_sd: Mapping[str, Tensor], sd: Mapping[str, Tensor], path: str | Path) -> None:
    """Raise :class:`CheckpointKeyError` listing keys whose shapes differ from the model's."""
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}"
        for k, v in sd.items()
        if k in model_sd and tuple(v.shape) != tuple(model_sd[k].shape)
    ]
    if bad:
        raise CheckpointKeyError(f"Checkpoint {path}: shape mismatch for {_fmt(bad)}")


def strip_prefix(sd: Mapping[str, Tensor], prefix: str) -> tuple[dict[str, Tensor], list[str]]:
    """``({key without prefix: value} for keys starting with prefix, [other keys])``."""
    kept = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    others = [k for k in sd if not k.startswith(prefix)]
    return kept, others


def load_state_dict_strict(
    module: torch.nn.Module, sd: Mapping[str, Tensor], path: str | Path, optional: Optional[Iterable[str]] = None
) -> None:
    """Check keys and shapes against ``module.state_dict()``, then load (``strict`` unless some
    ``optional`` key is absent)."""
    model_sd = module.state_dict()
    optional = set(optional or ())
    check_keys(model_sd.keys(), sd.keys(), path, optional=optional)
    check_shapes(model_sd, sd, path)
    module.load_state_dict(dict(sd), strict=not (optional - set(sd)))
