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

Protocols: ``evar`` is EVAR's (batch ``min(200, N_train)``, early stopping on the validation score, at most
``max_epochs``): on a split of 162 clips that is one Adam step per epoch, a few dozen steps in all.
``converge`` (the default) keeps that batch rule but guarantees at least ``min_steps`` optimizer steps
(Lightning's ``min_steps``; ``max_epochs`` is raised to make room), so a small split is trained as long as
a large one. Either way each seed's row records ``steps``, ``epochs``, the final ``train_loss`` /
``valid_loss`` and ``loss_settled`` (:func:`loss_settled` over the per-epoch training loss); a seed whose
loss had not settled is logged as a warning.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Literal, Optional, Sequence

import pandas as pd
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from analysis.runs.atomic import check_writable, copy_file, save_csv
from analysis.runs.layout import PROBE_RESULTS, TEMP_SUFFIX, probe_checkpoint_name, temp_prefix
from analysis.runs.read import best_checkpoint, read_lightning_checkpoint
from datamodules.features import FeatureDataModule
from lightning_modules.linear_probe import LinearProbe

__all__ = ["RESULT_COLUMNS", "check_seeds", "fit_seeds", "best_checkpoint"]

RESULT_COLUMNS = [
    "seed",
    "metric",
    "test_score",
    "test_macro_recall",
    "test_macro_f1",
    "val_score",
    "best_epoch",
    "epochs",
    "steps",
    "train_loss",
    "valid_loss",
    "loss_settled",
    "protocol",
    "n_train",
    "n_valid",
    "n_test",
    "checkpoint",
]
#: Optimizer steps the ``converge`` protocol guarantees.
MIN_STEPS = 300
#: The training loss has settled when it changed by less than this share over the last epochs ...
SETTLED_CHANGE = 0.02
#: ... or by less than this much (nats): on separable data the loss creeps towards 0 without end.
SETTLED_ABS = 0.005

log = logging.getLogger(__name__)


def loss_settled(
    losses: Sequence[float], window: int = 10, tolerance: float = SETTLED_CHANGE, absolute: float = SETTLED_ABS
) -> bool:
    """Did the per-epoch training loss settle: over the last ``window`` epochs (at least 10 % of them) it
    changed by less than ``tolerance`` of its last value or by less than ``absolute``? False with fewer
    than ``window + 1`` epochs.

    >>> loss_settled([1.0 / (e + 1) for e in range(30)]), loss_settled([1.0] * 5 + [0.5] * 30)
    (False, True)
    >>> loss_settled([0.02 - 0.0001 * e for e in range(40)]), loss_settled([2.0 - 0.01 * e for e in range(40)])
    (True, False)
    """
    x = [float(v) for v in losses if math.isfinite(float(v))]
    w = max(int(window), len(x) // 10)
    if len(x) <= w:
        return False
    tail = x[-(w + 1) :]
    change = max(tail) - min(tail)
    return change <= tolerance * abs(tail[-1]) or change <= absolute


class _LossHistory(Callback):
    """The epoch-mean training loss after every training epoch."""

    def __init__(self) -> None:
        self.train: list[float] = []

    def on_train_epoch_end(self, trainer: Trainer, pl_module) -> None:
        v = trainer.callback_metrics.get("train/loss")
        if v is not None:
            self.train.append(float(v))


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


def _budget(protocol: str, max_epochs: int, min_steps: int, n_train: int, batch_size: int) -> dict[str, int]:
    """The Trainer's ``max_epochs`` / ``min_steps``: EVAR's epochs, or room for ``min_steps`` steps.

    >>> _budget("evar", 200, 500, 162, 162), _budget("converge", 200, 500, 162, 162)
    ({'max_epochs': 200}, {'max_epochs': 500, 'min_steps': 500})
    """
    if protocol == "evar":
        return {"max_epochs": max_epochs}
    per_epoch = max(1, math.ceil(n_train / max(1, batch_size)))
    return {"max_epochs": max(max_epochs, math.ceil(min_steps / per_epoch)), "min_steps": min_steps}


def fit_seeds(
    run_dir: str | Path,
    out_dir: str | Path,
    seeds: Sequence[int] = (42, 43, 44),
    lr: PositiveFloat = 3e-5,
    weight_decay: NonNegativeFloat = 1e-8,
    max_epochs: PositiveInt = 200,
    patience: NonNegativeInt = 20,
    batch_size: Optional[PositiveInt] = None,
    protocol: Literal["converge", "evar"] = "converge",
    min_steps: PositiveInt = MIN_STEPS,
    overwrite: bool = False,
    accelerator: str = "cpu",
    tensorboard: Optional[str] = None,
    name: str = "probe",
) -> pd.DataFrame:
    """Fit/test one probe per seed; write ``<out_dir>/probe_results.csv`` and ``probe_seed<seed>.ckpt``.

    ``protocol``: ``converge`` (at least ``min_steps`` optimizer steps) or ``evar`` (EVAR's epoch budget
    only, the study mode); see the module docstring.

    ``tensorboard``: a folder for TensorBoard logs (``<tensorboard>/<name>/probe_seed<seed>``), None = no logger.
    Returns the results table (seed rows + ``mean`` and ``std`` rows). ``test_score`` is accuracy for
    single-label tasks and macro mAP for multi-label ones (column ``metric`` says which)."""
    seeds = check_seeds(seeds)
    if protocol not in ("converge", "evar"):
        raise ValueError(f"protocol must be 'converge' or 'evar', got {protocol!r}")
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
            hist = _LossHistory()
            budget = _budget(protocol, int(max_epochs), int(min_steps), len(dm.datasets["train"]), dm.batch_size)
            tr = Trainer(
                **budget,
                accelerator=accelerator,
                devices=1,
                logger=lg,
                callbacks=[ck, es, hist],
                enable_progress_bar=False,
                enable_model_summary=False,
                deterministic=True,
            )
            tr.fit(model, datamodule=dm)
            fit_metrics = {k: float(v) for k, v in tr.callback_metrics.items() if k in ("train/loss", "val/loss")}
            settled = loss_settled(hist.train)
            if not settled:
                log.warning(
                    "probe seed %s of %s: training stopped after %d steps (%d epochs) before the training "
                    "loss settled (last epochs: %s)",
                    seed,
                    run_dir,
                    tr.global_step,
                    tr.current_epoch,
                    [round(v, 4) for v in hist.train[-5:]],
                )
            best = read_lightning_checkpoint(ck.best_model_path)
            model.load_state_dict(best["state_dict"])
            res = tr.test(model, datamodule=dm, verbose=False)[0]
            copy_file(ck.best_model_path, dst, overwrite)
            best_epoch = int(best["epoch"])
        rows.append(
            dict(
                seed=str(seed),
                metric="mAP" if dm.multilabel else "accuracy",
                test_score=float(res["test/score"]),
                test_macro_recall=float(res["test/macro_recall"]),
                test_macro_f1=float(res["test/macro_f1"]),
                val_score=float(ck.best_model_score),
                best_epoch=best_epoch,
                epochs=int(tr.current_epoch),
                steps=int(tr.global_step),
                train_loss=fit_metrics.get("train/loss", math.nan),
                valid_loss=fit_metrics.get("val/loss", math.nan),
                loss_settled=settled,
                protocol=protocol,
                n_train=len(dm.datasets["train"]),
                n_valid=len(dm.datasets["valid"]),
                n_test=len(dm.datasets["test"]),
                checkpoint=dst.name,
            )
        )
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    num = ["test_score", "test_macro_recall", "test_macro_f1", "val_score"]
    mean = {c: "" for c in RESULT_COLUMNS} | {"seed": "mean", "metric": rows[0]["metric"]} | df[num].mean().to_dict()
    std = (
        {c: "" for c in RESULT_COLUMNS}
        | {"seed": "std", "metric": rows[0]["metric"]}
        | (df[num].std(ddof=1).to_dict() if len(df) > 1 else {c: 0.0 for c in num})
    )
    df = pd.concat([df, pd.DataFrame([mean, std], columns=RESULT_COLUMNS)], ignore_index=True)
    save_csv(df, csv, overwrite)
    return df
