"""The checks that a statistics run folder and the module under test belong together: a callback that
reads a run folder refuses one made by another encoder, a probe fitted on another model's or data list's
embeddings (as far as ``manifest.json`` and the probe checkpoint record them), and other class names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from analysis.runs.identity import DATA_KEYS, MODEL_KEYS, check_run, encoder_identity
from analysis.runs.read import read_classes


def check_sources(run_dir: Path, pl_module: Any) -> None:
    """Refuse ``run_dir`` when it was made by another model than ``pl_module.encoder``, or when
    ``pl_module.probe`` was fitted on another model's or data list's embeddings than the run folder's."""
    encoder = pl_module.encoder
    check_run(run_dir, encoder_identity(encoder), consumer=f"the encoder under test ({type(encoder).__name__})")
    source = getattr(getattr(pl_module, "probe", None), "source", None) or {}
    source = {k: v for k, v in source.items() if k in MODEL_KEYS + DATA_KEYS}
    if source:
        ckpt = getattr(getattr(pl_module, "hparams", None), "probe_checkpoint", None) or "of the model"
        check_run(run_dir, source, consumer=f"the probe checkpoint {ckpt} (fitted on that model and data)")


def checked_classes(run_dir: Optional[Path], classes: Optional[Sequence[str]], who: str) -> list[str]:
    """The module's ``classes`` (None: the run folder's ``classes.txt``); an error naming ``who`` when
    neither is known or when they differ from the run folder's."""
    run_classes = read_classes(run_dir) if run_dir else None
    if classes is None:
        if run_classes is None:
            raise ValueError(f"{who}: the model has no class names and no run_dir was given")
        classes = run_classes
    if run_classes is not None and list(run_classes) != list(classes):
        raise ValueError(
            f"{who}: classes of the run folder {run_dir} {run_classes} differ from the probe's classes {list(classes)}"
        )
    return list(classes)
