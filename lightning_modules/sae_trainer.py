"""``SAETrainer``: train a :class:`SparseAutoencoder` on one site of a frozen encoder, on activations
streamed batch by batch from the audio datamodule (``trainer.fit``; DDP and precision from the Trainer).

Each training batch of audio runs through the frozen encoder; a forward hook on the site collects the
counted positions' activation vectors (rows ``[M, d_in]``, never more than one batch's); the SAE takes
``steps_per_batch`` optimiser steps on them (the same number on every process, so DDP stays in step).
With ``activation_cache`` the first epoch also writes each batch's rows to disk and later epochs read them
back instead of running the encoder (the audio batches still arrive; only their index is used).

Validation (the held-out clips of the datamodule's ``valid`` split) sums exactly, across processes, the
fraction of variance explained (``fve``), reconstruction MSE, L0 and which latents fired (dead = never),
and logs them to TensorBoard as ``sae/<metric>``; :attr:`metrics` keeps the last values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor

from analysis import sae as A
from analysis.runs.atomic import save_torch
from analysis.runs.identity import weights_sha256
from analysis.runs.layout import sae_cache_file
from analysis.runs.read import load_tensor_file

from .encoders.base import AudioEncoder
from .sparse_autoencoder import SparseAutoencoder, site_rows

log = logging.getLogger(__name__)


class SAETrainer(pl.LightningModule):
    """A frozen encoder + the SAE of one of its sites, for ``trainer.fit``.

    Args (SAELens names where they exist):
        encoder: the frozen audio encoder.
        site: one of ``encoder.neuron_sites``.
        d_sae: latents; 0 = ``expansion_factor * d_in``.
        expansion_factor: ``d_sae / d_in`` when ``d_sae`` is 0.
        architecture: ``topk`` (default) or ``standard`` (ReLU + L1).
        k: latents kept per row (``topk``).
        l1_coefficient: weight of the L1 penalty (``standard``).
        aux_k: latents of the auxiliary-k loss (``topk`` dead-latent handling); 0 = off; default 2 * k.
        aux_loss_coefficient: weight of the auxiliary-k loss (Gao et al.: 1/32).
        dead_feature_window: a latent that has not fired for this many training steps is dead (it gets
            the auxiliary-k gradient).
        lr: Adam learning rate.
        steps_per_batch: optimiser steps per batch of audio (its rows split in this many chunks).
        tokens: which positions are rows (``all`` | ``patches``, as the statistics callback).
        activation_cache: folder for cached activation rows (reused from the second epoch on); None = off.
        seed: seed of the initial weights.
    """

    def __init__(
        self,
        encoder: AudioEncoder,
        site: str,
        d_sae: int = 0,
        expansion_factor: int = 4,
        architecture: Literal["topk", "standard"] = "topk",
        k: int = 16,
        l1_coefficient: float = 1e-3,
        aux_k: Optional[int] = None,
        aux_loss_coefficient: float = 1.0 / 32,
        dead_feature_window: int = 200,
        lr: float = 1e-3,
        steps_per_batch: int = 1,
        tokens: str = "all",
        activation_cache: Optional[str] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if site not in list(encoder.neuron_sites):
            raise ValueError(
                f"SAETrainer: site {site!r} is not a site of {type(encoder).__name__} "
                f"(sites: {list(encoder.neuron_sites)})"
            )
        if steps_per_batch < 1 or dead_feature_window < 1:
            raise ValueError(
                f"SAETrainer: steps_per_batch={steps_per_batch} and dead_feature_window="
                f"{dead_feature_window} must be >= 1"
            )
        self.save_hyperparameters(ignore=["encoder"])
        self.automatic_optimization = False
        self.encoder = encoder.requires_grad_(False).eval()
        self.site = site
        d_in = int(encoder.site_neurons[list(encoder.neuron_sites).index(site)])
        self.sae = SparseAutoencoder(d_in, int(d_sae) or int(expansion_factor) * d_in, architecture, k, seed)
        self.aux_k = 2 * int(k) if aux_k is None else int(aux_k)
        self.register_buffer("steps_since_fired", torch.zeros(self.sae.d_sae, dtype=torch.long))
        self._b_dec_ready = False
        self._val: Optional[dict[str, Any]] = None
        self.metrics: dict[str, float] = {}
        self.train_rows = 0

    # -- activations ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "SAETrainer":
        super().train(mode)
        self.encoder.eval()  # BatchNorm / dropout of the frozen encoder never train
        return self

    @torch.no_grad()
    def site_activations(self, batch: dict[str, Any]) -> Tensor:
        """Rows ``[M, d_in]`` (float32) of the counted positions of the site for a batch of audio."""
        rows: list[Tensor] = []
        enc, tokens = self.encoder, self.hparams.tokens

        def hook(module: Any, inputs: Any, output: Tensor) -> None:
            pos = enc.positions(self.site, output)
            rows.append(site_rows(output, enc.channel_axis, pos.counted(tokens)).float())

        handle = enc.get_submodule(self.site).register_forward_hook(hook)
        try:
            enc(batch["audio"], batch.get("length"))
        finally:
            handle.remove()
        return torch.cat(rows) if rows else torch.zeros(0, self.sae.d_in, device=self.device)

    def _rows(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        cache = self.hparams.activation_cache
        if cache is None:
            return self.site_activations(batch)
        path = Path(cache) / sae_cache_file(self.global_rank, batch_idx)
        if self.current_epoch > 0 and path.is_file():
            return load_tensor_file(path).to(self.device)
        x = self.site_activations(batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(x.cpu(), path, overwrite=True)
        return x

    # -- training --------------------------------------------------------------------------------
    def _init_b_dec(self, x: Tensor) -> None:
        """Once, from the first batch (averaged over processes): ``input_scale`` (mean squared norm of the
        scaled rows = d_in) and ``b_dec`` = the mean scaled row."""
        sums = torch.stack([x.double().pow(2).sum(), x.new_tensor(float(x.shape[0]), dtype=torch.float64)])
        row_sum = x.double().sum(0)
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.clone(), reduce_op="sum")
            row_sum = self.trainer.strategy.reduce(row_sum.clone(), reduce_op="sum")
        n = float(sums[1])
        with torch.no_grad():
            ms = float(sums[0]) / n if n else 0.0
            scale = (self.sae.d_in / ms) ** 0.5 if ms > 0 else 1.0
            self.sae.input_scale.fill_(scale)
            self.sae.b_dec.copy_((row_sum / max(n, 1.0) * scale).to(self.sae.b_dec.dtype))
        self._b_dec_ready = True

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss of rows ``x [M, d_in]`` and its parts; updates the dead-latent clock."""
        sae = self.sae
        s = sae.input_scale
        x_hat, z, pre = sae(x)
        mse = A.reconstruction_mse(x * s, x_hat * s)  # in the scaled units (learning rate independent of scale)
        parts = {"mse": mse}
        total = mse
        if sae.architecture == "standard":
            parts["l1"] = A.l1_penalty(z, sae.W_dec)
            total = total + self.hparams.l1_coefficient * parts["l1"]
        dead = self.steps_since_fired >= self.hparams.dead_feature_window
        if sae.architecture == "topk" and self.aux_k > 0:
            parts["aux"] = A.auxk_loss(pre, ((x - x_hat) * s).detach(), dead, self.aux_k, sae.W_dec)
            total = total + self.hparams.aux_loss_coefficient * parts["aux"]
        fired = (z > 0).any(0)
        if self.trainer.world_size > 1:
            fired = self.trainer.strategy.reduce(fired.long(), reduce_op="sum") > 0
        self.steps_since_fired += 1
        self.steps_since_fired[fired] = 0
        parts["dead_fraction"] = dead.double().mean()
        parts["l0"] = A.l0(z)
        return total, parts

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = self._rows(batch, batch_idx)
        if not self._b_dec_ready:
            self._init_b_dec(x)
        opt = self.optimizers()
        parts: dict[str, Tensor] = {}
        for chunk in torch.tensor_split(x[torch.randperm(x.shape[0], device=x.device)], self.hparams.steps_per_batch):
            total, parts = self.loss(chunk)
            opt.zero_grad()
            self.manual_backward(total)
            w = self.sae.W_dec
            if w.grad is not None:
                w.grad.copy_(A.remove_parallel_grad(w.detach(), w.grad))
            opt.step()
            self.sae.normalize_decoder()
        self.train_rows += int(x.shape[0])
        for name, v in parts.items():
            self.log(f"sae/train_{name}", float(v.detach()), on_step=True, on_epoch=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.sae.parameters(), lr=self.hparams.lr)

    # -- held-out metrics ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        d = self.device
        self._val = {
            "var": A.VarianceSums(self.sae.d_in, d),
            "fired": torch.zeros(self.sae.d_sae, dtype=torch.long, device=d),
            "nnz": torch.zeros((), dtype=torch.float64, device=d),
        }

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        assert self._val is not None
        x = self.site_activations(batch)
        with torch.no_grad():
            x_hat, z, _ = self.sae(x)
        self._val["var"].add(x, x_hat)
        self._val["fired"] += (z > 0).sum(0)
        self._val["nnz"] += (z != 0).sum().double()

    def on_validation_epoch_end(self) -> None:
        assert self._val is not None
        v = self._val
        tensors = v["var"].tensors() + [v["fired"], v["nnz"]]
        if self.trainer.world_size > 1:  # one sum-reduce per tensor (Lightning's default is mean, in place)
            tensors = [self.trainer.strategy.reduce(t.clone(), reduce_op="sum") for t in tensors]
        var = A.VarianceSums(self.sae.d_in, self.device)
        var.sum, var.sum_sq, var.sse, var.n = tensors[:4]
        fired, nnz = tensors[4], tensors[5]
        n = float(var.n)
        self.metrics = {
            "fve": var.fve(),
            "mse": float(var.sse) / n if n else float("nan"),
            "l0": float(nnz) / n if n else float("nan"),
            "dead_fraction": float((fired == 0).double().mean()),
            "rows": int(n),
        }
        for name in ("fve", "mse", "l0", "dead_fraction"):
            self.log(f"sae/{name}", self.metrics[name], on_epoch=True, rank_zero_only=True)
        self._val = None

    def config(self) -> dict[str, Any]:
        """What an ``sae.pt`` records besides the weights (the site, the options, the encoder)."""
        h = dict(self.hparams)
        return {
            "site": self.site,
            "channel_axis": int(self.encoder.channel_axis),
            "tokens": h["tokens"],
            "l1_coefficient": float(h["l1_coefficient"]),
            "encoder_name": getattr(self.encoder, "name", None),
            "encoder": type(self.encoder).__name__,
            "encoder_sha256": weights_sha256(self.encoder),
            "options": {k: h[k] for k in sorted(h)},
        }
