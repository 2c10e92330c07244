"""``probe``: fit the linear probe over several seeds (EVAR protocol) and write ``probe_results.csv``.

``python -m analysis probe --run <run folder> --out <folder> [--seeds 42 43 44] [--lr 3e-5]
[--max-epochs 200] [--patience 20] [--batch-size N] [--overwrite]``

Per seed: ``seed_everything(seed)``, :class:`FeatureDataModule` (seeded valid carve-out when the task
has none), :class:`LinearProbe`, ``EarlyStopping(val/score, patience)`` and ``ModelCheckpoint(val/score)``
(into a temporary folder); the best checkpoint is read back with ``weights_only=True``, its weights are
tested, and it is copied atomically to ``<out>/probe_seed<seed>.ckpt`` (a kill never leaves part of it
under that name). The checkpoint records the run folder's identity (``source``) so the ablation can
refuse a probe of another model or data list. Rows of ``probe_results.csv``: one per seed, then ``mean``
and ``std`` (sample std over seeds).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from analysis.runs.atomic import check_writable, copy_file, save_csv
from analysis.runs.layout import PROBE_RESULTS, TEMP_SUFFIX, probe_checkpoint_name, temp_prefix
from analysis.runs.read import best_checkpoint, read_lightning_checkpoint
from datamodules.features import FeatureDataModule
from lightning_modules.linear_probe import LinearProbe

__all__ = ["RESULT_COLUMNS", "check_seeds", "fit_seeds", "best_checkpoint"]

RESULT_COLUMNS = ["seed", "metric", "test_score", "test_macro_recall", "test_macro_f1", "val_score",
                  "best_epoch", "epochs", "n_train", "n_valid", "n_test", "checkpoint"]


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list; ``ValueError`` unless it is a non-empty list of distinct integers.

    >>> check_seeds([42, 43])
    [42, 43]
    """
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad:
        raise ValueError(f"seeds must be integers, got {bad!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (one checkpoint per seed), got {list(seeds)}")
    return list(seeds)


def fit_seeds(run_dir: str | Path, out_dir: str | Path, seeds: Sequence[int] = (42, 43, 44), lr: PositiveFloat = 3e-5,
              weight_decay: NonNegativeFloat = 1e-8, max_epochs: PositiveInt = 200, patience: NonNegativeInt = 20,
              batch_size: Optional[PositiveInt] = None, overwrite: bool = False, accelerator: str = "cpu",
              tensorboard: Optional[str] = None, name: str = "probe") -> pd.DataFrame:
    """Fit/test one probe per seed; write ``<out_dir>/probe_results.csv`` and ``probe_seed<seed>.ckpt``.

    ``tensorboard``: a folder for TensorBoard logs (``<tensorboard>/<name>/probe_seed<seed>``), None = no logger.
    Returns the results table (seed rows + ``mean`` and ``std`` rows). ``test_score`` is accuracy for
    single-label tasks and macro mAP for multi-label ones (column ``metric`` says which)."""
    seeds = check_seeds(seeds)
    out = Path(out_dir)
    csv = check_writable(out / PROBE_RESULTS, overwrite)
    for s in seeds:
        check_writable(out / probe_checkpoint_name(s), overwrite)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        seed_everything(int(seed), workers=True, verbose=False)
        dm = FeatureDataModule(run_dir, batch_size=batch_size, seed=int(seed))
        dm.setup("fit")
        model = LinearProbe(lr=float(lr), weight_decay=float(weight_decay))
        dst = out / probe_checkpoint_name(seed)
        with tempfile.TemporaryDirectory(dir=out, prefix=temp_prefix(dst.name), suffix=TEMP_SUFFIX) as tmp:
            ck = ModelCheckpoint(dirpath=tmp, filename="best", monitor="val/score", mode="max")
            es = EarlyStopping(monitor="val/score", mode="max", patience=int(patience))
            lg = TensorBoardLogger(str(tensorboard), name=name, version=f"probe_seed{seed}") if tensorboard else False
            tr = Trainer(max_epochs=int(max_epochs), accelerator=accelerator, devices=1, logger=lg, callbacks=[ck, es],
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)
            tr.fit(model, datamodule=dm)
            best = read_lightning_checkpoint(ck.best_model_path)
            model.load_state_dict(best["state_dict"])
            res = tr.test(model, datamodule=dm, verbose=False)[0]
            copy_file(ck.best_model_path, dst, overwrite)
            best_epoch = int(best["epoch"])
        rows.append(dict(seed=str(seed), metric="mAP" if dm.multilabel else "accuracy",
                         test_score=float(res["test/score"]), test_macro_recall=float(res["test/macro_recall"]),
                         test_macro_f1=float(res["test/macro_f1"]), val_score=float(ck.best_model_score),
                         best_epoch=best_epoch, epochs=int(tr.current_epoch), n_train=len(dm.datasets["train"]),
                         n_valid=len(dm.datasets["valid"]), n_test=len(dm.datasets["test"]), checkpoint=dst.name))
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    num = ["test_score", "test_macro_recall", "test_macro_f1", "val_score"]
    mean = {c: "" for c in RESULT_COLUMNS} | {"seed": "mean", "metric": rows[0]["metric"]} | df[num].mean().to_dict()
    std = {c: "" for c in RESULT_COLUMNS} | {"seed": "std", "metric": rows[0]["metric"]} | (
        df[num].std(ddof=1).to_dict() if len(df) > 1 else {c: 0.0 for c in num})
    df = pd.concat([df, pd.DataFrame([mean, std], columns=RESULT_COLUMNS)], ignore_index=True)
    save_csv(df, csv, overwrite)
    return df
