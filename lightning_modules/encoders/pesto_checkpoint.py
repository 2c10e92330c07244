"""Reading PESTO's checkpoint (``pesto-pitch`` wheel, ``pesto/weights/mir-1k_g7.ckpt``) without pickled code.

The file is a Lightning checkpoint whose ``hparams`` hold omegaconf containers (``DictConfig``,
``ListConfig``, their ``Metadata`` and ``AnyNode`` leaves). It is read with ``weights_only=True`` loading
(through :func:`analysis.runs.read.load_tensor_file`) with an allow-list of inert stand-in classes
registered under omegaconf's names: the unpickler may only create these plain objects (their state is
stored in ``__dict__``, no method of omegaconf runs), ``typing.Any`` and ``collections.defaultdict``
(omegaconf's resolver cache). :func:`plain` turns the stand-ins back into dicts and lists.

The package itself is never imported (its ``__init__`` imports torchaudio); the file is located with
:func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import collections
import importlib.machinery
import importlib.util
import typing
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from analysis.runs.read import load_tensor_file

INSTALL_HINT = "pip install --no-deps pesto-pitch==2.0.1"
DEFAULT_WEIGHTS = "mir-1k_g7"


class _OmegaConfStandIn:
    """An inert object standing for an omegaconf class while unpickling: the pickled state goes into
    ``__dict__`` and nothing else happens."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


def _stand_in(qualified: str) -> tuple[type, str]:
    return type(qualified.rpartition(".")[2], (_OmegaConfStandIn,), {"__module__": __name__}), qualified


#: The globals PESTO's checkpoint needs beyond tensors and plain containers.
ALLOWED: list[Any] = [list, dict, int, typing.Any, collections.defaultdict] + [
    _stand_in(name)
    for name in (
        "omegaconf.dictconfig.DictConfig",
        "omegaconf.listconfig.ListConfig",
        "omegaconf.base.ContainerMetadata",
        "omegaconf.base.Metadata",
        "omegaconf.nodes.AnyNode",
    )
]


def plain(x: Any) -> Any:
    """omegaconf stand-ins → their values (``AnyNode`` → its ``_val``, containers → their ``_content``)."""
    if isinstance(x, _OmegaConfStandIn):
        d = x.__dict__
        return plain(d["_val"]) if "_val" in d else plain(d.get("_content"))
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def pesto_weights_path(name: str = DEFAULT_WEIGHTS) -> Path:
    """``pesto/weights/<name>.ckpt`` of the installed ``pesto-pitch`` wheel, found without importing it."""
    try:
        spec = importlib.util.find_spec("pesto")
    except ValueError:  # a module object without a spec sits in sys.modules: search the path
        spec = importlib.machinery.PathFinder.find_spec("pesto")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"PESTO weights need the pesto-pitch package (weights only, it is never imported); "
            f"install it with `{INSTALL_HINT}` (make install does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{name}.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"PESTO weight file {path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


def read_pesto_checkpoint(path: str | Path) -> dict[str, Any]:
    """``{"state_dict", "hparams", "hcqt_params"}`` of a PESTO checkpoint, plain values (see module)."""
    path = Path(path)
    ck = load_tensor_file(path, allow=ALLOWED)
    missing = [k for k in ("state_dict", "hparams", "hcqt_params") if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise KeyError(f"PESTO checkpoint {path}: no {missing} (not a pesto-pitch checkpoint)")
    return {
        "state_dict": dict(ck["state_dict"]),
        "hparams": plain(ck["hparams"]),
        "hcqt_params": plain(ck["hcqt_params"]),
    }


def _ours(key: str) -> Optional[str]:
    """pesto-pitch's state-dict key → this project's (None: not part of the network we build)."""
    parts = key.split(".")
    if key == "shift":
        return "shift"
    if parts[0] != "encoder":
        return None  # the confidence head (voicing) is not built
    if parts[1] == "layernorm":
        return f"layernorm.{parts[2]}"
    if parts[1] == "conv1" and parts[2] == "0":
        return f"layers.0.conv.{parts[3]}"
    if parts[1] == "prefilt_layers" and parts[3] == "0":
        return f"layers.{int(parts[2]) + 1}.conv.{parts[4]}"
    if parts[1] == "conv_layers" and int(parts[2]) % 3 == 0:
        return f"conv_layers.{int(parts[2]) // 3}"
    if parts[1] == "fc":
        return f"fc.{parts[2]}"
    return None


def convert_state_dict(
    state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], n_prefilter: int, source: str
) -> dict[str, Tensor]:
    """Map pesto-pitch keys to ours (``layers.{i}.conv``: 0 = first conv, 1..n = the residual prefilters,
    then the 1x1 convs) and check names and shapes against ``expected``; one error lists every problem.
    Keys of the confidence head (``confidence.*``) are ignored."""
    out: dict[str, Tensor] = {}
    unexpected = []
    for key, value in state.items():
        ours = _ours(key)
        if ours is not None and ours.startswith("conv_layers."):
            j, field = key.split(".")[2], key.split(".")[3]
            ours = f"layers.{n_prefilter + 1 + int(j) // 3}.conv.{field}"
        if ours is None:
            if not key.startswith("confidence."):
                unexpected.append(key)
            continue
        out[ours] = value
    missing = [k for k in expected if k not in out]
    unexpected += [k for k in out if k not in expected]
    bad = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k])}"
        for k, v in out.items()
        if k in expected and tuple(v.shape) != tuple(expected[k])
    ]
    if missing or unexpected or bad:
        raise KeyError(
            f"PESTO checkpoint {source} does not match the architecture: missing {missing}, "
            f"unexpected {unexpected}, shape mismatches {bad}"
        )
    return out
