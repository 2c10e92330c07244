"""ActivationStatsCallback: exact per-class activation counts of the encoder's neuron sites during
``trainer.predict``, written to the run folder ``<out_dir>/<task>_<suffix>/``.

Thin wrapper: the maths is in :mod:`analysis.activation_stats`, the files in :mod:`analysis.runs`.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
from pathlib import Path
from typing import Any, Optional

import lightning
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from analysis import activation_stats as S
from analysis.runs import write as R
from analysis.runs.identity import encoder_identity
from analysis.runs.layout import run_folder
from callbacks.hooks import SiteHooks
from lightning_modules.encoders.base import site_view

log = logging.getLogger(__name__)


class ActivationStatsCallback(Callback):
    """Count, for every neuron of every site of ``pl_module.encoder`` and every class, the counted
    positions with activation > 0 (``trainer.predict`` only), and write the run folder.

    Args:
        out_dir: parent folder of the run folder ``<out_dir>/<task>_<suffix>/``.
        suffix: run folder suffix; default ``encoder.name`` (M2D: ``analysis``).
        tokens: token policy, ``all`` (every position holding input) or ``patches`` (CLS and other
            special tokens excluded). Padding-only positions are never counted.
        level: ``token`` (over_zero = positive positions / positions) or ``clip`` (over_zero = mean over
            clips of each clip's firing rate, so long clips do not dominate).
        splits: splits whose clips are counted (e.g. ``[train]``); default all predicted splits.
            Embeddings (features.pt) are written for every predicted clip.
        overwrite: replace an existing run folder's results instead of failing.
        log_tensorboard: log per-layer mean firing rates when the trainer has a TensorBoard logger.
        config: configuration to record as ``config`` in manifest.json (e.g. the pipeline's); default
            the LightningCLI config when run from ``train.py``, else the model/datamodule hparams.
    """

    def __init__(
        self,
        out_dir: str,
        suffix: Optional[str] = None,
        tokens: str = "all",
        level: str = "token",
        splits: Optional[list[str]] = None,
        overwrite: bool = False,
        log_tensorboard: bool = True,
        config: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        S.check_policy(tokens, level)
        self.config = config
        self.out_dir = out_dir
        self.suffix = suffix
        self.tokens = tokens
        self.level = level
        self.splits = list(splits) if splits is not None else None
        self.overwrite = overwrite
        self.log_tensorboard = log_tensorboard
        self._hooks: Optional[SiteHooks] = None
        self._reset()

    # -- state -----------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._totals: Optional[dict[str, Tensor]] = None
        self._buffers: Optional[list[dict[str, Tensor]]] = None
        self._rows: list[dict[str, Any]] = []
        self.folder: Optional[Path] = None

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._buffers = None

    # -- setup -------------------------------------------------------------------------------------
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        encoder = getattr(pl_module, "encoder", None)
        if encoder is None or not hasattr(encoder, "neuron_sites"):
            raise TypeError(f"ActivationStatsCallback needs pl_module.encoder with neuron_sites; got {type(pl_module).__name__}")
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "classes") or not hasattr(dm, "task"):
            raise TypeError("ActivationStatsCallback needs a datamodule with .classes and .task (EVARDataModule)")
        self._reset()
        self._remove_hooks()
        self.classes = list(dm.classes)
        self.sites = list(encoder.neuron_sites)
        self.site_neurons = [int(n) for n in encoder.site_neurons]
        if len(self.site_neurons) != len(self.sites):
            raise ValueError(f"encoder.site_neurons has {len(self.site_neurons)} entries for {len(self.sites)} sites")
        suffix = self.suffix or getattr(encoder, "name", None) or type(encoder).__name__.lower()
        self.folder = run_folder(self.out_dir, dm.task, suffix)
        R.check_run_folder(self.folder, self.overwrite)  # fail before the long run, not after
        self._totals = S.new_totals(self.site_neurons, len(self.classes), self.level)
        self._encoder = encoder
        self._hooks = SiteHooks(encoder, [(site, self._make_hook(l, site)) for l, site in enumerate(self.sites)]).attach()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Before the predict dataloader exists: Lightning's sampler crashes obscurely otherwise.
        if stage == "predict":
            self._check_enough_clips(trainer)

    @staticmethod
    def _check_enough_clips(trainer: Trainer) -> None:
        world, dm = trainer.world_size, trainer.datamodule
        if world <= 1 or dm is None:
            return
        dataset = getattr(dm.predict_dataloader(), "dataset", None)
        n = len(dataset) if hasattr(dataset, "__len__") else None
        if n is not None and n < world:
            raise ValueError(
                f"The predict dataset of task {getattr(dm, 'task', '?')!r} has {n} clips but the run uses "
                f"{world} processes; every process needs at least one clip: use --trainer.devices <= {n} "
                "or more data"
            )

    def _make_hook(self, l: int, site: str):
        encoder = self._encoder

        def hook(module: torch.nn.Module, inputs: Any, output: Tensor) -> None:
            if self._buffers is None:  # forward outside a predict batch (e.g. a sanity call)
                return
            act = site_view(output, encoder.channel_axis)
            pos = encoder.positions(site, output)
            S.accumulate_call(self._buffers[l], act, pos.counted(self.tokens), pos.clip)

        return hook

    # -- per batch ---------------------------------------------------------------------------------
    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        b = int(batch["audio"].shape[0])
        dev = batch["audio"].device
        self._buffers = [S.new_batch_buffer(b, n, dev) for n in self.site_neurons]

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        assert self._totals is not None and self._buffers is not None
        label = batch["label"]
        classes = S.labels_to_multihot(label, len(self.classes))
        split = list(batch["split"])
        counted = None
        if self.splits is not None:
            counted = torch.tensor([s in self.splits for s in split], dtype=torch.bool)
        S.fold_batch(self._totals, self._buffers, classes, counted)
        self._buffers = None
        emb = outputs["embedding"] if isinstance(outputs, dict) else outputs
        # Clone: on one device predict runs under inference mode.
        self._rows.append(
            {
                "embedding": emb.detach().float().cpu().clone(),
                "label": label.detach().cpu().clone(),
                "index": batch["index"].detach().cpu().long().clone(),
                "split": split,
                "file_name": list(batch["file_name"]),
            }
        )

    # -- end ---------------------------------------------------------------------------------------
    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self._totals is not None
        self._buffers = None
        # Exactly one all-reduce per tensor (sum; Lightning's default is mean, and it works in place).
        for key in list(self._totals):
            self._totals[key] = trainer.strategy.reduce(self._totals[key], reduce_op="sum")
        rows = self._gather_rows(trainer)
        if trainer.is_global_zero:
            self._write(trainer, pl_module, rows)
        trainer.strategy.barrier("activation_stats_written")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _gather_rows(self, trainer: Trainer) -> dict[str, Any]:
        local = {
            "embedding": torch.cat([r["embedding"] for r in self._rows]) if self._rows else torch.zeros(0, 0),
            "label": torch.cat([r["label"] for r in self._rows]) if self._rows else torch.zeros(0, dtype=torch.long),
            "index": torch.cat([r["index"] for r in self._rows]) if self._rows else torch.zeros(0, dtype=torch.long),
            "split": [s for r in self._rows for s in r["split"]],
            "file_name": [f for r in self._rows for f in r["file_name"]],
        }
        self._rows = []
        parts = [local]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * trainer.world_size
            # Ranks hold different numbers of clips: gather Python objects (CPU tensors), not padded tensors.
            torch.distributed.all_gather_object(parts, local)
        parts = [p for p in parts if p is not None and len(p["index"])]
        if not parts:
            raise RuntimeError("ActivationStatsCallback: no clip was predicted")
        index = torch.cat([p["index"] for p in parts])
        order = torch.argsort(index, stable=True)
        index = index[order]
        if len(index) > 1 and bool((index[1:] == index[:-1]).any()):
            dup = index[1:][index[1:] == index[:-1]].unique().tolist()
            raise RuntimeError(f"ActivationStatsCallback: clips predicted twice (dataset index {dup[:10]})")
        split = [s for p in parts for s in p["split"]]
        names = [f for p in parts for f in p["file_name"]]
        return {
            "embedding": torch.cat([p["embedding"] for p in parts])[order],
            "label": torch.cat([p["label"] for p in parts])[order],
            "index": index,
            "split": [split[i] for i in order.tolist()],
            "file_name": [names[i] for i in order.tolist()],
        }

    def _write(self, trainer: Trainer, pl_module: LightningModule, rows: dict[str, Any]) -> None:
        assert self._totals is not None and self.folder is not None
        totals = self._totals
        oz = S.over_zero(totals, self.site_neurons, self.level)
        gts = rows["label"]
        gts = gts.long() if gts.dim() == 1 else gts.float()
        table = R.index_table(rows["index"], rows["file_name"], gts, rows["split"], self.classes)
        stats = {k: v.cpu() for k, v in totals.items()}
        stats.update(
            sites=self.sites,
            site_neurons=self.site_neurons,
            classes=self.classes,
            tokens=self.tokens,
            level=self.level,
            splits=self.splits,
        )
        manifest = self._manifest(trainer, pl_module, table)
        R.write_run_folder(
            self.folder,
            over_zero=oz,
            classes=self.classes,
            features=rows["embedding"],
            gts=gts,
            stats=stats,
            index=table,
            manifest=manifest,
            overwrite=self.overwrite,
        )
        log.info("ActivationStatsCallback wrote %s", self.folder)
        if self.log_tensorboard:
            self._log_tensorboard(trainer, oz)

    def _manifest(self, trainer: Trainer, pl_module: LightningModule, table: Any) -> dict[str, Any]:
        encoder = self._encoder
        ckpt = getattr(encoder, "checkpoint_path", None)
        ident = encoder_identity(encoder)
        return {
            "config": self.config if self.config is not None else _run_config(trainer, pl_module),
            "task": trainer.datamodule.task,
            "encoder": ident["encoder"],
            "encoder_name": ident["encoder_name"],
            "checkpoint": str(ckpt) if ckpt else None,
            "checkpoint_sha256": ident["checkpoint_sha256"],
            "data_list_sha256": R.data_list_sha256(table),
            "n_clips": len(table),
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "precision": str(trainer.precision),
            "tokens": self.tokens,
            "level": self.level,
            "splits": self.splits,
            "sites": self.sites,
            "site_neurons": self.site_neurons,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "lightning": lightning.__version__,
            },
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _log_tensorboard(self, trainer: Trainer, oz: Tensor) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                task = trainer.datamodule.task
                for l in range(oz.shape[0]):
                    logger.experiment.add_scalar(f"activation_stats/{task}/mean_firing_rate", float(oz[l].nanmean()), l)
                logger.experiment.flush()


def _run_config(trainer: Trainer, pl_module: LightningModule) -> Any:
    """The LightningCLI config (as a plain dict) when run from the CLI, else the hparams."""
    from lightning.pytorch.cli import SaveConfigCallback

    for cb in trainer.callbacks:
        if isinstance(cb, SaveConfigCallback):
            try:
                import yaml

                return yaml.safe_load(cb.parser.dump(cb.config, skip_none=False, skip_check=True))
            except Exception as e:  # pragma: no cover - config is informative only
                log.warning("Could not serialise the CLI config for the manifest: %s", e)
    dm = trainer.datamodule
    return {
        "model": dict(getattr(pl_module, "hparams", {}) or {}),
        "data": dict(getattr(dm, "hparams", {}) or {}) if dm is not None else None,
    }
