"""Objects from their recorded specs: encoders from ``{class_path, init_args}`` (a pipeline's ``models``, a
run folder's manifest) and the model and data a statistics run folder was made with."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from torch import nn

from analysis.runs.layout import MANIFEST


def instantiate(spec: dict[str, Any], where: str) -> nn.Module:
    """Build an encoder from ``{class_path, init_args}`` through jsonargparse (nested class specs too);
    a failure is a ``ValueError`` naming ``where``."""
    p = ArgumentParser(exit_on_error=False)
    p.add_subclass_arguments(nn.Module, "encoder")
    try:
        ns = p.parse_object({"encoder": spec})
    except Exception as e:
        raise ValueError(f"{where}: {' '.join(str(e).split())}") from e
    return p.instantiate_classes(ns).encoder


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
    raise ValueError(f"{Path(run_dir) / MANIFEST}: does not record the encoder and the data of the run "
                     "(config.encoder + config.data, or the LightningCLI config.model.init_args.encoder + "
                     "config.data.init_args)")
