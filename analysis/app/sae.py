"""Train one sparse autoencoder on one site of a frozen encoder and write its SAE folder (``sae.pt`` +
``metrics.csv``, :mod:`analysis.runs.layout`); the pipeline's ``sae`` stage calls :func:`train_sae` once per
(model, site). The ``sae`` section of a pipeline config is this function's keyword arguments plus
:class:`SAEPipelineOptions`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import lightning.pytorch as pl
from jsonargparse.typing import PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger

from analysis.activation_stats import TokenPolicy
from analysis.runs.layout import SAE_CACHE_DIR, SAE_FILE, SAE_METRICS_CSV
from analysis.runs.write import write_sae
from lightning_modules import SAETrainer
from lightning_modules.encoders.base import AudioEncoder

log = logging.getLogger("aape.sae")


@dataclass
class SAEPipelineOptions:
    """Which SAEs the pipeline trains or loads (the ``sae`` section besides :func:`train_sae`'s options).

    Attributes:
        enabled: train (or load) SAEs and analyse their features as a model of their own.
        models: models that get SAEs (default: every model of the config).
        sites: neuron sites that get an SAE (default: every site of the model).
        load: ``{model: {site: sae.pt or SAE folder}}``: use these trained SAEs instead of training.
        train_tasks: tasks whose train splits the SAEs train on (default: every task; their valid splits
            give the held-out metrics).
        suffix: the feature model of model ``m`` is ``<m><suffix>``.
    """

    enabled: bool = False
    models: Optional[list[str]] = None
    sites: Optional[list[str]] = None
    load: Optional[dict[str, dict[str, str]]] = None
    train_tasks: Optional[list[str]] = None
    suffix: str = "_sae"


def train_sae(
    encoder: AudioEncoder,
    site: str,
    datamodule: pl.LightningDataModule,
    dest: str | Path,
    *,
    d_sae: int = 0,
    expansion_factor: PositiveInt = 4,
    architecture: Literal["topk", "standard"] = "topk",
    k: PositiveInt = 16,
    l1_coefficient: float = 1e-3,
    aux_k: Optional[int] = None,
    aux_loss_coefficient: float = 1.0 / 32,
    dead_feature_window: PositiveInt = 200,
    lr: float = 1e-3,
    steps_per_batch: PositiveInt = 1,
    max_epochs: PositiveInt = 10,
    activation_cache: bool = True,
    tokens: TokenPolicy = "all",
    seed: int = 0,
    accelerator: str = "cpu",
    devices: Any = 1,
    precision: Any = "32-true",
    strategy: str = "auto",
    tensorboard: Optional[str | Path] = None,
    name: str = "sae",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fit an SAE on ``site`` of ``encoder`` (activations streamed from ``datamodule``'s train batches),
    measure it on the held-out ``valid`` batches and write ``dest/sae.pt`` and ``dest/metrics.csv``.
    Returns the metrics row.

    Args:
        encoder: the frozen encoder.
        site: the neuron site the SAE reads.
        datamodule: train batches (activations) and valid batches (held-out metrics).
        dest: the SAE folder.
        d_sae: latents of the SAE; 0 = expansion_factor * the site's neurons.
        expansion_factor: d_sae / neurons of the site when d_sae is 0.
        architecture: topk (the k largest pre-activations kept) or standard (ReLU, trained with an L1 penalty).
        k: latents kept per position (topk).
        l1_coefficient: weight of the L1 penalty (standard).
        aux_k: latents of the auxiliary-k loss that revives dead latents (topk); 0 = off; default 2 * k.
        aux_loss_coefficient: weight of the auxiliary-k loss.
        dead_feature_window: training steps without firing after which a latent counts as dead.
        lr: Adam learning rate.
        steps_per_batch: optimiser steps per batch of audio (its positions split in this many chunks).
        max_epochs: passes over the training clips.
        activation_cache: keep the first epoch's activations on disk (dest/activation_cache/, removed at the
            end) and read them in later epochs instead of running the encoder.
        tokens: positions the SAE trains on: all, or patches (no CLS/special tokens).
        seed: seed of the initial weights and of the shuffles.
        accelerator: the Trainer's accelerator.
        devices: the Trainer's devices.
        precision: the Trainer's precision.
        strategy: the Trainer's strategy.
        tensorboard: TensorBoard folder (None: no logger).
        name: TensorBoard run name.
        overwrite: replace an existing sae.pt / metrics.csv.
    """
    dest = Path(dest)
    for f in (SAE_FILE, SAE_METRICS_CSV):
        if (dest / f).exists() and not overwrite:
            raise FileExistsError(f"{dest / f} already exists (overwrite it with --force)")
    cache = dest / SAE_CACHE_DIR
    if cache.exists():
        shutil.rmtree(cache)  # rows of an interrupted attempt
    pl.seed_everything(seed, workers=True, verbose=False)
    module = SAETrainer(
        encoder,
        site,
        d_sae=d_sae,
        expansion_factor=expansion_factor,
        architecture=architecture,
        k=k,
        l1_coefficient=l1_coefficient,
        aux_k=aux_k,
        aux_loss_coefficient=aux_loss_coefficient,
        dead_feature_window=dead_feature_window,
        lr=lr,
        steps_per_batch=steps_per_batch,
        tokens=tokens,
        activation_cache=str(cache) if activation_cache else None,
        seed=seed,
    )
    logger = TensorBoardLogger(str(tensorboard), name=name, version="sae") if tensorboard else False
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        strategy=strategy,
        max_epochs=max_epochs,
        logger=logger,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=max_epochs,
        log_every_n_steps=10,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    m = module.metrics
    if not m:
        raise RuntimeError(f"SAE on {site}: no validation pass ran (does the data have a valid split?)")
    row = {
        "site": site,
        "d_sae": module.sae.d_sae,
        "k": module.sae.k if architecture == "topk" else "",
        "fve": m["fve"],
        "l0": m["l0"],
        "dead_fraction": m["dead_fraction"],
        "mse": m["mse"],
        "architecture": architecture,
        "rows": m["rows"],
        "train_rows": module.train_rows,
        "steps": int(trainer.global_step),
        "seconds": round(seconds, 2),
    }
    if trainer.is_global_zero:
        write_sae(dest, module.sae.file_dict(module.config()), row, overwrite=overwrite)
    log.info(
        "SAE %s on %s: fve %.3f, L0 %.2f, dead %.3f (%d held-out rows, %.1f s) -> %s",
        name,
        site,
        m["fve"],
        m["l0"],
        m["dead_fraction"],
        m["rows"],
        seconds,
        dest,
    )
    return row
