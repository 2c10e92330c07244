"""Fit the linear probe over several seeds (EVAR protocol) and write ``probe_results.csv``.

``python -m analysis.probe_seeds --run-dir <run folder> --out <folder> [--seeds 42 43 44] [--lr 3e-5]
[--max-epochs 200] [--patience 20] [--batch-size N] [--overwrite]``

Per seed: ``seed_everything(seed)``, :class:`FeatureDataModule` (seeded valid carve-out when the task
has none), :class:`LinearProbe`, ``EarlyStopping(val/score, patience)`` and ``ModelCheckpoint(val/score)``;
the best checkpoint is copied to ``<out>/probe_seed<seed>.ckpt`` and tested (best weights). Rows of
``probe_results.csv``: one per seed, then ``mean`` and ``std`` (sample std over seeds).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from analysis.io import check_writable, save_csv

RESULT_COLUMNS = ["seed", "metric", "test_score", "test_macro_recall", "test_macro_f1", "val_score",
                  "best_epoch", "epochs", "n_train", "n_valid", "n_test", "checkpoint"]


def fit_seeds(run_dir: str | Path, out_dir: str | Path, seeds: Sequence[int] = (42, 43, 44), lr: float = 3e-5,
              weight_decay: float = 1e-8, max_epochs: int = 200, patience: int = 20,
              batch_size: Optional[int] = None, overwrite: bool = False, accelerator: str = "cpu",
              tensorboard: Optional[str] = None, name: str = "probe") -> pd.DataFrame:
    """Fit/test one probe per seed; write ``<out_dir>/probe_results.csv`` and ``probe_seed<seed>.ckpt``.

    ``tensorboard``: a folder for TensorBoard logs (``<tensorboard>/<name>/probe_seed<seed>``), None = no logger.
    Returns the results table (seed rows + ``mean`` and ``std`` rows). ``test_score`` is accuracy for
    single-label tasks and macro mAP for multi-label ones (column ``metric`` says which)."""
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from datamodules.features import FeatureDataModule
    from lightning_modules.linear_probe import LinearProbe

    out = Path(out_dir)
    csv = check_writable(out / "probe_results.csv", overwrite)
    for s in seeds:
        check_writable(out / f"probe_seed{s}.ckpt", overwrite)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        seed_everything(int(seed), workers=True, verbose=False)
        dm = FeatureDataModule(run_dir, batch_size=batch_size, seed=int(seed))
        dm.setup("fit")
        model = LinearProbe(lr=lr, weight_decay=weight_decay)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            ck = ModelCheckpoint(dirpath=tmp, filename="best", monitor="val/score", mode="max")
            es = EarlyStopping(monitor="val/score", mode="max", patience=patience)
            lg = TensorBoardLogger(str(tensorboard), name=name, version=f"probe_seed{seed}") if tensorboard else False
            tr = Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=lg, callbacks=[ck, es],
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)
            tr.fit(model, datamodule=dm)
            res = tr.test(model, datamodule=dm, ckpt_path=ck.best_model_path, verbose=False)[0]
            dst = out / f"probe_seed{seed}.ckpt"
            shutil.copyfile(ck.best_model_path, dst)
            best_epoch = _epoch_of(ck.best_model_path)
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


fit_probe_seeds = fit_seeds


def best_checkpoint(probe_dir: str | Path) -> Path:
    """The checkpoint of the seed with the highest validation score in ``<probe_dir>/probe_results.csv``
    (ties: the first seed listed). Chosen on validation, never on test."""
    d = Path(probe_dir)
    csv = d / "probe_results.csv"
    if not csv.exists():
        raise FileNotFoundError(f"{csv} not found; fit the probe first (python -m analysis.probe_seeds)")
    df = pd.read_csv(csv, dtype={"seed": str})
    df = df[~df["seed"].isin(["mean", "std"])]
    if df.empty:
        raise ValueError(f"{csv}: no seed rows")
    best = df.iloc[int(df["val_score"].to_numpy().argmax())]
    p = d / str(best["checkpoint"])
    if not p.exists():
        raise FileNotFoundError(f"{p} (listed in {csv}) not found")
    return p


def _epoch_of(ckpt_path: str) -> int:
    import torch

    return int(torch.load(ckpt_path, map_location="cpu", weights_only=False)["epoch"])


def main(argv: Optional[Sequence[str]] = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(prog="python -m analysis.probe_seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True, help="neuron-statistics run folder (features.pt, gts.pt, index.csv)")
    ap.add_argument("--out", required=True, help="output folder (probe_results.csv, probe_seed<seed>.ckpt)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--weight-decay", type=float, default=1e-8)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--tensorboard", default=None, help="folder for TensorBoard logs (default: none)")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    df = fit_seeds(a.run_dir, a.out, a.seeds, a.lr, a.weight_decay, a.max_epochs, a.patience, a.batch_size,
                   a.overwrite, a.accelerator, a.tensorboard)
    print(df.to_string(index=False))
    return df


if __name__ == "__main__":
    main()
