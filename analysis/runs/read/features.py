"""Reader of a run folder's embeddings: ``features.pt``, ``gts.pt`` and the splits of ``index.csv``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from analysis.runs.layout import CLASSES, FEATURES, GTS, INDEX, INDEX_SPLITS
from analysis.runs.read.loaders import load_tensor_file
from analysis.runs.read.statistics_folder import read_classes


@dataclass
class Features:
    """The embeddings of a run folder: ``features`` float32 ``[clips, E]``, ``gts`` int64 ``[clips]`` or
    float32 multi-hot ``[clips, C]``, ``rows`` split → sorted LongTensor of feature rows (train, valid,
    test and ``none``: clips without a split, which the probe never uses), ``classes``."""

    features: Tensor
    gts: Tensor
    rows: dict[str, Tensor]
    classes: list[str]


def read_features(run_dir: str | Path) -> Features:
    """``features.pt``, ``gts.pt``, ``index.csv`` and ``classes.txt`` of a run folder, checked against
    each other (row counts, label range, finite values, splits)."""
    d = Path(run_dir)
    for f in (FEATURES, GTS, INDEX, CLASSES):
        if not (d / f).exists():
            raise FileNotFoundError(f"{d / f} not found (a statistics run folder with embeddings is needed)")
    classes = read_classes(d)
    feats, gts = load_tensor_file(d / FEATURES), load_tensor_file(d / GTS)
    if not isinstance(feats, Tensor) or feats.dim() != 2:
        raise ValueError(
            f"{d / FEATURES}: expected a float tensor [N, E], got {getattr(feats, 'shape', type(feats).__name__)}"
        )
    if not torch.isfinite(feats).all():
        bad = (~torch.isfinite(feats)).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{d / FEATURES}: non-finite values in rows {bad}")
    N, C = feats.shape[0], len(classes)
    if not isinstance(gts, Tensor):
        raise ValueError(f"{d / GTS}: expected a tensor, got {type(gts).__name__}")
    if gts.shape[0] != N:
        raise ValueError(f"{d / GTS}: {gts.shape[0]} rows, {FEATURES} has {N}")
    if gts.dim() == 1:
        gts = gts.long()
        if gts.numel() and (gts.min() < 0 or gts.max() >= C):
            raise ValueError(f"{d / GTS}: labels outside 0..{C - 1} ({CLASSES} has {C} classes)")
    elif gts.dim() == 2:
        if gts.shape[1] != C:
            raise ValueError(f"{d / GTS}: multi-hot width {gts.shape[1]}, {CLASSES} has {C} classes")
        gts = gts.float()
    else:
        raise ValueError(f"{d / GTS}: expected [N] or [N, C], got {tuple(gts.shape)}")
    idx = pd.read_csv(d / INDEX)
    missing = {"row", "split"} - set(idx.columns)
    if missing:
        raise ValueError(f"{d / INDEX}: missing columns {sorted(missing)} (has {list(idx.columns)})")
    rows = idx["row"].to_numpy()
    if sorted(rows.tolist()) != list(range(N)):
        raise ValueError(f"{d / INDEX}: column row must list 0..{N - 1} once each ({FEATURES} rows)")
    splits = idx["split"].astype(str).to_numpy()
    bad = sorted(set(splits) - set(INDEX_SPLITS))
    if bad:
        i = int(next(k for k, s in enumerate(splits) if s in bad))
        raise ValueError(f"{d / INDEX}: row {i}: split {splits[i]!r} not one of {INDEX_SPLITS}")
    by_split = {s: torch.as_tensor(sorted(rows[splits == s].tolist()), dtype=torch.long) for s in INDEX_SPLITS}
    return Features(features=feats.float(), gts=gts, rows=by_split, classes=classes)
