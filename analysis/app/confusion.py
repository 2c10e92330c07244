"""``confusion``: the change in confusion vs the baseline for any chosen ablation conditions, drawn from an
ablation folder's ``ablation_confusion.csv`` (``python -m analysis confusion --ablation DIR --condition NAME
...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from analysis.ablation import confusion_matrix
from analysis.figures import confusion_change_figure
from analysis.runs.atomic import check_writable, save_pdf
from analysis.runs.layout import confusion_figure_name
from analysis.runs.read import read_ablation_confusion


def confusion_figure(
    ablation_dir: str | Path, conditions: Sequence[str], out: Optional[str | Path] = None, overwrite: bool = False
) -> Path:
    """Write the baseline confusion and, per condition of ``conditions``, its change vs the baseline as one
    PDF (default ``<ablation_dir>/ablation_confusion-<conditions>.pdf``). Returns the path."""
    if not conditions:
        raise ValueError("name at least one condition (see the 'condition' column of ablation.csv)")
    d = Path(ablation_dir)
    path = check_writable(Path(out) if out is not None else d / confusion_figure_name(list(conditions)), overwrite)
    table, classes = read_ablation_confusion(d)
    mats = {c: confusion_matrix(table, c, classes) for c in ["baseline", *conditions]}
    return save_pdf(confusion_change_figure(mats, classes), path, overwrite, bbox_inches="tight")
