"""ActivationStatsCallback: exact per-class activation counts of the encoder's neuron sites during
``trainer.predict``, each neuron's top clips, and the clips' embeddings, written to the run folder
``<out_dir>/<task>_<suffix>/``.

Thin wrapper: the maths is in :mod:`analysis.activation_stats` and :mod:`analysis.top_clips`, the files in
:mod:`analysis.runs`. Per batch everything stays on the module's device (no host sync); each process
spools its clips' rows to disk in chunks; at the end every count tensor is sum-reduced once, the top
clips are gathered and merged, and process 0 writes the run folder, streaming the rows in dataset order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from jsonargparse.typing import NonNegativeInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from analysis import activation_stats as S
from analysis import top_clips as T
from analysis.runs import write as R
from analysis.runs.identity import encoder_identity
from analysis.runs.layout import run_folder
from callbacks.hooks import SiteHooks
from callbacks.pending_rows import PendingRows, to_device
from callbacks.provenance import provenance, run_config
from callbacks.row_gather import gathered_rows
from lightning_modules.encoders.base import site_view

log = logging.getLogger(__name__)


class ActivationStatsCallback(Callback):
    """Count, for every neuron of every site of ``pl_module.encoder`` and every class, the counted
    positions with activation > 0 (``trainer.predict`` only), keep each neuron's top clips, and write the
    run folder.

    Args:
        out_dir: parent folder of the run folder ``<out_dir>/<task>_<suffix>/``.
        suffix: run folder suffix; default ``encoder.name`` (M2D: ``analysis``).
        tokens: token policy, ``all`` (every position holding input) or ``patches`` (CLS and other
            special tokens excluded). Padding-only positions are never counted.
        level: ``token`` (over_zero = positive positions / positions) or ``clip`` (over_zero = mean over
            clips of each clip's firing rate, so long clips do not dominate).
        splits: splits whose clips are counted (e.g. ``[train]``); default all predicted splits.
            Embeddings (features.pt) are written for every predicted clip.
        top_k: clips kept per neuron in ``top_clips.pt`` (highest mean activation over the clip's counted
            positions, with the place of the clip's peak); candidates are the counted clips; 0 = none.
        act_sum: compute the activation sums ``act_sum`` of ``stats.pt`` (dataset means, needed by mean
            ablation). They come free with the top clips (``top_k > 0``), which need them anyway; with
            ``top_k: 0`` and ``act_sum: false`` the counting skips them and ``stats.pt`` has no ``act_sum``.
        class_sums: also sum the activations per class (``act_sum_class`` of ``stats.pt``: the mean activation
            per class of tuning curves, :mod:`analysis.tuning`); ``[L, N, C]`` float64, so off by default.
        features: write the clip embeddings ``features.pt`` (needed by the probe); false for
            statistics-only runs.
        compile: run each site call's counting (and top-clip peak search) as one ``torch.compile``-d
            kernel instead of the eager kernels: same counts, about half the cost of the top clips, but a
            one-off compilation (seconds to a minute) and a C++ compiler (CPU) or Triton (GPU).
        overwrite: replace an existing run folder's results instead of failing.
        log_tensorboard: log per-layer mean firing rates when the trainer has a TensorBoard logger.
        config: configuration to record as ``config`` in manifest.json (e.g. the pipeline's); default
            the LightningCLI config when run from ``train.py``, else the model/datamodule hparams.
    """

    def __init__(
        self,
        out_dir: str,
        suffix: Optional[str] = None,
        tokens: S.TokenPolicy = "all",
        level: S.Level = "token",
        splits: Optional[list[str]] = None,
        top_k: NonNegativeInt = 8,
        act_sum: bool = False,
        class_sums: bool = False,
        features: bool = True,
        compile: bool = False,
        overwrite: bool = False,
        log_tensorboard: bool = True,
        config: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        S.check_policy(tokens, level)
        if top_k < 0:
            raise ValueError(f"ActivationStatsCallback: top_k must be >= 0, got {top_k}")
        self.config = config
        self.out_dir = out_dir
        self.suffix = suffix
        self.tokens = tokens
        self.level = level
        self.splits = list(splits) if splits is not None else None
        self.top_k = int(top_k)
        self.act_sum = bool(act_sum)
        self.class_sums = bool(class_sums)
        self.features = bool(features)
        self.compile = bool(compile)
        self.overwrite = overwrite
        self.log_tensorboard = log_tensorboard
        self._hooks: Optional[SiteHooks] = None
        self._spool: Optional[R.RowSpool] = None
        self._reset()

    @property
    def sums(self) -> bool:
        """Whether activation sums are computed (``act_sum`` or ``class_sums`` asked for, or needed by the top
        clips)."""
        return self.act_sum or self.class_sums or self.top_k > 0

    # -- state -----------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._totals: Optional[dict[str, Tensor]] = None
        self._top: Optional[dict[str, Tensor]] = None
        self._buffers: Optional[list[dict[str, Tensor]]] = None
        self._pending = PendingRows(self._spill)  # rows waiting on the device
        self.folder: Optional[Path] = None

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._buffers = None

    def _remove_spool(self) -> None:
        if self._spool is not None:
            self._spool.remove()
            self._spool = None

    # -- setup -------------------------------------------------------------------------------------
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        encoder = getattr(pl_module, "encoder", None)
        if encoder is None or not hasattr(encoder, "neuron_sites"):
            raise TypeError(
                f"ActivationStatsCallback needs pl_module.encoder with neuron_sites; got {type(pl_module).__name__}"
            )
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "classes") or not hasattr(dm, "task"):
            raise TypeError("ActivationStatsCallback needs a datamodule with .classes and .task (EVARDataModule)")
        suffix = self.suffix or getattr(encoder, "name", None) or type(encoder).__name__.lower()
        self.begin(encoder, list(dm.classes), pl_module.device)
        self.folder = run_folder(self.out_dir, dm.task, suffix)
        R.check_run_folder(self.folder, self.overwrite)  # fail before the long run, not after
        self._spool = R.RowSpool.create(self.out_dir, f"{self.folder.name}-rank{trainer.global_rank}")

    def begin(self, encoder: Any, classes: Sequence[str], device: torch.device | str) -> None:
        """Zero the totals on ``device`` and hook ``encoder``'s sites (``on_predict_start`` without the
        run folder; public for benchmarks that drive the per-batch hooks themselves)."""
        self._reset()
        self._remove_hooks()
        self._remove_spool()
        self.classes = list(classes)
        self.sites = list(encoder.neuron_sites)
        self.site_neurons = [int(n) for n in encoder.site_neurons]
        if len(self.site_neurons) != len(self.sites):
            raise ValueError(f"encoder.site_neurons has {len(self.site_neurons)} entries for {len(self.sites)} sites")
        self._device = torch.device(device)
        self._totals = S.new_totals(
            self.site_neurons, len(self.classes), self.level, self.sums, self._device, class_sums=self.class_sums
        )
        if self.top_k:
            self._top = T.new_top(len(self.sites), max(self.site_neurons), self.top_k, self._device)
        self._encoder = encoder
        self._n_bands = int(getattr(encoder, "n_bands", 0) or 0)
        self._workspace = T.Workspace()
        self._hooks = SiteHooks(
            encoder, [(site, self._make_hook(l, site)) for l, site in enumerate(self.sites)]
        ).attach()

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
        peaks = self.top_k > 0

        def hook(module: torch.nn.Module, inputs: Any, output: Tensor) -> None:
            if self._buffers is None:  # forward outside a predict batch (e.g. a sanity call)
                return
            act = site_view(output, encoder.channel_axis)
            pos = encoder.positions(site, output)
            S.accumulate_call(
                self._buffers[l],
                act,
                pos.counted(self.tokens),
                pos.clip,
                pos.frames() if peaks else None,
                pos.band,
                self._n_bands,
                self._workspace,
                self.compile,
            )

        return hook

    # -- per batch ---------------------------------------------------------------------------------
    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        b = int(batch["audio"].shape[0])
        self._buffers = [
            S.new_batch_buffer(b, n, self._device, sums=self.sums, peaks=self.top_k > 0) for n in self.site_neurons
        ]

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        assert self._totals is not None and self._buffers is not None
        dev = self._device
        label = batch["label"].to(dev)
        classes = S.labels_to_multihot(label, len(self.classes))
        split = list(batch["split"])
        counted = None
        if self.splits is not None:
            counted = to_device(torch.tensor([s in self.splits for s in split], dtype=torch.bool), dev)
        S.fold_batch(self._totals, self._buffers, classes, counted)
        index = torch.as_tensor(batch["index"]).to(dev).long()
        if self._top is not None:
            candidate = classes.any(1) if counted is None else classes.any(1) & counted
            n_max = self._top["score"].shape[1]
            T.update_top(
                self._top,
                T.stack_sites([S.clip_means(b) for b in self._buffers], n_max, float("nan")),
                index,
                candidate,
                T.stack_sites([b["peak_key"] for b in self._buffers], n_max, -1),
                self._n_bands,
            )
        self._buffers = None
        emb = outputs["embedding"] if isinstance(outputs, dict) else outputs
        self._pending.add(
            {"embedding": emb.detach(), "label": label.detach(), "index": index}
            if self.features
            else {"label": label.detach(), "index": index},
            list(zip(split, batch["file_name"])),
        )

    def _spill(self, rows: dict[str, Tensor], meta: list[tuple[str, str]]) -> None:
        """Append flushed host rows to this process's spool (labels checked first)."""
        S.check_labels(rows["label"], len(self.classes), rows["index"])
        if self._spool is not None:
            self._spool.append(
                label=rows["label"],
                index=rows["index"],
                split=[m[0] for m in meta],
                file_name=[m[1] for m in meta],
                embedding=rows["embedding"].float() if "embedding" in rows else None,
            )

    # -- end ---------------------------------------------------------------------------------------
    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self._totals is not None and self._spool is not None
        self._buffers = None
        self._pending.flush()
        self._spool.close()
        # Exactly one all-reduce per tensor (sum; Lightning's default is mean, and it works in place).
        for key in list(self._totals):
            self._totals[key] = trainer.strategy.reduce(self._totals[key], reduce_op="sum")
        if self._top is not None and trainer.world_size > 1:
            self._top = T.merge_gathered({k: trainer.strategy.all_gather(v) for k, v in self._top.items()})
        rows = gathered_rows(self._spool, trainer.world_size, trainer.global_rank)
        if trainer.is_global_zero:
            self._write(trainer, pl_module, rows)
        trainer.strategy.barrier("activation_stats_written")
        self._remove_spool()

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_hooks()
        self._remove_spool()

    def _write(self, trainer: Trainer, pl_module: LightningModule, rows: Optional[R.RowBlocks]) -> None:
        assert self._totals is not None and self.folder is not None and rows is not None
        totals = {k: v.cpu() for k, v in self._totals.items()}
        oz = S.over_zero(totals, self.site_neurons, self.level)
        stats = dict(totals)
        stats.update(
            sites=self.sites,
            site_neurons=self.site_neurons,
            classes=self.classes,
            tokens=self.tokens,
            level=self.level,
            splits=self.splits,
        )
        R.write_run_folder(
            self.folder,
            over_zero=oz,
            classes=self.classes,
            stats=stats,
            rows=rows,
            manifest=self._manifest(trainer, pl_module),
            top_clips=self._top_clips_file(),
            overwrite=self.overwrite,
        )
        log.info("ActivationStatsCallback wrote %s", self.folder)
        if self.log_tensorboard:
            self._log_tensorboard(trainer, oz)

    def _top_clips_file(self) -> Optional[dict[str, Any]]:
        """The ``top_clips.pt`` dict (format: :mod:`analysis.runs.layout`), None without top clips."""
        if self._top is None:
            return None
        enc = self._encoder
        return {
            **{k: v.cpu() for k, v in self._top.items()},
            "k": self.top_k,
            "sites": self.sites,
            "site_neurons": self.site_neurons,
            "frame_seconds": getattr(enc, "frame_seconds", None),
            "frames_per_position": int(getattr(enc, "frames_per_position", 1)),
            "n_bands": self._n_bands,
        }

    def _manifest(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """Provenance; :func:`analysis.runs.write.write_run_folder` adds ``n_clips``, ``data_list_sha256``
        and ``features``."""
        encoder = self._encoder
        ckpt = getattr(encoder, "checkpoint_path", None)
        ident = encoder_identity(encoder)
        return {
            "config": self.config if self.config is not None else run_config(trainer, pl_module),
            "task": trainer.datamodule.task,
            "encoder": ident["encoder"],
            "encoder_name": ident["encoder_name"],
            "checkpoint": str(ckpt) if ckpt else None,
            "checkpoint_sha256": ident["checkpoint_sha256"],
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "precision": str(trainer.precision),
            "tokens": self.tokens,
            "level": self.level,
            "splits": self.splits,
            "top_k": self.top_k,
            "act_sum": self.sums,
            "class_sums": self.class_sums,
            "compile": self.compile,
            "sites": self.sites,
            "site_neurons": self.site_neurons,
            **provenance(),
        }

    def _log_tensorboard(self, trainer: Trainer, oz: Tensor) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                task = trainer.datamodule.task
                for l in range(oz.shape[0]):
                    logger.experiment.add_scalar(f"activation_stats/{task}/mean_firing_rate", float(oz[l].nanmean()), l)
                logger.experiment.flush()
