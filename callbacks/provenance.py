"""Provenance of a run folder (what ``manifest.json`` records beside the run's own options): the
configuration it was run with, the library versions, the global seed and the time."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
from typing import Any

import lightning
import torch
import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback

log = logging.getLogger(__name__)


def run_config(trainer: Trainer, pl_module: LightningModule) -> Any:
    """The LightningCLI config (as a plain dict) when run from the CLI, else the hparams."""
    for cb in trainer.callbacks:
        if isinstance(cb, SaveConfigCallback):
            try:
                return yaml.safe_load(cb.parser.dump(cb.config, skip_none=False, skip_check=True))
            except Exception as e:  # pragma: no cover - config is informative only
                log.warning("Could not serialise the CLI config for the manifest: %s", e)
    dm = trainer.datamodule
    return {
        "model": dict(getattr(pl_module, "hparams", {}) or {}),
        "data": dict(getattr(dm, "hparams", {}) or {}) if dm is not None else None,
    }


def provenance() -> dict[str, Any]:
    """``versions`` (Python, torch, Lightning), ``seed`` (``PL_GLOBAL_SEED``, None when unset) and
    ``time`` (UTC, to the second)."""
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
        },
        "seed": os.environ.get("PL_GLOBAL_SEED"),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
