"""Objects from their recorded specs: encoders from ``{class_path, init_args}`` (a pipeline's ``models``, a
run folder's manifest) and the model and data a statistics run folder was made with.

The one home of encoder specs: their shape (:func:`encoder_spec`), their check against the class's
signature (:func:`check_encoder`) and the encoder built from them (:func:`instantiate`) go through the
same parser (:func:`encoder_parser`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace
from torch import nn

from analysis.app.config_parse import _jsonargparse_problem
from analysis.runs.layout import MANIFEST


#: Packages whose exceptions carry the project's own message (a loader naming its file): reported as they
#: are, not inside jsonargparse's "Does not validate against any of the Union subtypes".
_OWN_PACKAGES = ("analysis", "lightning_modules", "datamodules", "callbacks")


def own_error(error: BaseException) -> BaseException:
    """The first exception of ``error``'s chain (``__cause__`` / ``__context__``) raised by this project or
    the operating system (a loader's own message), else ``error`` itself."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__.split(".")[0] in _OWN_PACKAGES or isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return error


def encoder_spec(spec: Any, where: str) -> dict[str, Any]:
    """The encoder spec ``{class_path, init_args}`` at ``where`` (e.g. ``models.crepe``), its shape
    checked (``ValueError`` naming ``where``); the class and its arguments: :func:`check_encoder`."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"{where} needs a 'class_path' (and optional 'init_args')")
    extra = set(spec) - {"class_path", "init_args"}
    if extra:
        raise ValueError(f"unknown key(s) {sorted(extra)} in '{where}'; allowed: class_path, init_args")
    if not isinstance(spec["class_path"], str):
        raise ValueError(f"{where}.class_path must be a string, got {spec['class_path']!r}")
    if not isinstance(spec.get("init_args") or {}, dict):
        raise ValueError(f"{where}.init_args must be a mapping, got {spec['init_args']!r}")
    return {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}


def encoder_parser() -> ArgumentParser:
    """The parser of an encoder spec: any ``nn.Module`` subclass under the key ``encoder``."""
    p = ArgumentParser(exit_on_error=False, default_env=False)
    p.add_subclass_arguments(nn.Module, "encoder")
    return p


def _parse_encoder(p: ArgumentParser, spec: dict[str, Any]) -> Namespace:
    return p.parse_object({"encoder": spec})


def check_encoder(spec: dict[str, Any], where: str) -> None:
    """The class of ``spec`` must import and accept its ``init_args`` (names and types); a ``ValueError``
    names ``where`` and the key path (``models.crepe.init_args.hop_ms: ...``)."""
    try:
        _parse_encoder(encoder_parser(), spec)
    except Exception as e:
        key, problem = _jsonargparse_problem(str(e), {"encoder": spec})
        raise ValueError(
            f"{where}{key[len('encoder') :] if key and key.startswith('encoder') else ''}: {problem}"
        ) from e


def instantiate(spec: dict[str, Any], where: str) -> nn.Module:
    """Build an encoder from ``{class_path, init_args}`` through jsonargparse (nested class specs too);
    a failure is a ``ValueError`` naming ``where`` with the loader's own message when the encoder's
    constructor raised it (e.g. a refused checkpoint)."""
    p = encoder_parser()
    try:
        return p.instantiate_classes(_parse_encoder(p, spec)).encoder
    except Exception as e:
        raise ValueError(f"{where}: {' '.join(str(own_error(e)).split())}") from e


def run_sources(manifest: dict[str, Any], run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(encoder spec, EVARDataModule arguments)`` a statistics run folder was made with, from its manifest:
    a pipeline run records ``config.encoder`` and ``config.data``; ``train.py predict`` records the
    LightningCLI config (``config.model.init_args.encoder``, ``config.data.init_args``)."""
    cfg = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    if isinstance(cfg.get("encoder"), dict) and isinstance(cfg.get("data"), dict):
        return cfg["encoder"], dict(cfg["data"])
    try:
        enc, data = cfg["model"]["init_args"]["encoder"], cfg["data"]["init_args"]
        if isinstance(enc, dict) and isinstance(data, dict):
            return enc, dict(data)
    except (KeyError, TypeError):
        pass
    raise ValueError(
        f"{Path(run_dir) / MANIFEST}: does not record the encoder and the data of the run "
        "(config.encoder + config.data, or the LightningCLI config.model.init_args.encoder + "
        "config.data.init_args)"
    )
