"""``SparseAutoencoder``: the parameters of one SAE on one site (maths in :mod:`analysis.sae`) and its file.

The file (``sae.pt``, written by :func:`analysis.runs.write.write_sae`, read by
:func:`analysis.runs.read.read_sae` with ``weights_only=True``) is a plain dict: ``W_enc``, ``b_enc``,
``W_dec``, ``b_dec``, ``input_scale`` (float32; the scalar the site's activations are multiplied by before
the SAE sees them, so that their mean squared norm is ``d_in`` during training, as SAELens'
``normalize_activations``) and ``config`` (``site``, ``d_in``, ``d_sae``, ``architecture``, ``k``,
``l1_coefficient``, ``encoder``: the identity of the encoder it was trained on, ``channel_axis``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from analysis import sae as A
from analysis.runs.read import read_sae

from .encoders.base import site_view


class SparseAutoencoder(nn.Module):
    """A TopK ("topk", default) or ReLU + L1 ("standard") SAE: ``x [R, d_in]`` -> latents ``[R, d_sae]``.

    Args:
        d_in: neurons of the site.
        d_sae: latents (SAELens name).
        architecture: "topk" (the ``k`` largest pre-activations kept) or "standard" (ReLU; trained with
            ``l1_coefficient``).
        k: latents kept per row ("topk").
        seed: seed of the initial weights.
    """

    def __init__(self, d_in: int, d_sae: int, architecture: str = "topk", k: int = 16, seed: int = 0) -> None:
        super().__init__()
        A.check_architecture(architecture, d_in, d_sae, k)
        self.d_in, self.d_sae, self.architecture, self.k = int(d_in), int(d_sae), architecture, int(k)
        g = torch.Generator().manual_seed(int(seed))
        for name, value in A.init_weights(self.d_in, self.d_sae, g).items():
            setattr(self, name, nn.Parameter(value))
        self.register_buffer("input_scale", torch.ones(()))

    def pre(self, x: Tensor) -> Tensor:
        """``[R, d_in]`` (site units) -> pre-activations ``[R, d_sae]``."""
        return A.pre_activations(x * self.input_scale, self.W_enc, self.b_enc, self.b_dec)

    def encode(self, x: Tensor) -> Tensor:
        """``[R, d_in]`` -> latents ``[R, d_sae]`` (non-negative; exactly <= k non-zero per row for topk)."""
        return A.activate(self.pre(x), self.architecture, self.k)

    def decode(self, z: Tensor) -> Tensor:
        """``[R, d_sae]`` -> reconstruction ``[R, d_in]`` (site units)."""
        return A.decode(z, self.W_dec, self.b_dec) / self.input_scale

    def decode_delta(self, dz: Tensor) -> Tensor:
        """The change of the reconstruction ``[R, d_in]`` (site units) for a change ``dz`` of the latents
        (linear: exactly 0 where ``dz`` is 0)."""
        return (dz @ self.W_dec) / self.input_scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [R, d_in]`` -> (reconstruction ``[R, d_in]``, latents ``[R, d_sae]``, pre-activations)."""
        pre = self.pre(x)
        z = A.activate(pre, self.architecture, self.k)
        return self.decode(z), z, pre

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (in place)."""
        self.W_dec.copy_(A.normalize_decoder(self.W_dec))

    def file_dict(self, config: dict[str, Any]) -> dict[str, Any]:
        """What :func:`analysis.runs.write.write_sae` stores (weights on the CPU + ``config``)."""
        weights = {k: v.detach().float().cpu().clone() for k, v in self.state_dict().items()}
        return {
            **weights,
            "config": {
                **config,
                "d_in": self.d_in,
                "d_sae": self.d_sae,
                "architecture": self.architecture,
                "k": self.k,
            },
        }

    @classmethod
    def from_file(cls, path: str | Path) -> tuple["SparseAutoencoder", dict[str, Any]]:
        """The SAE of an ``sae.pt`` file and its ``config``."""
        d = read_sae(path)
        cfg = d["config"]
        sae = cls(int(cfg["d_in"]), int(cfg["d_sae"]), str(cfg["architecture"]), int(cfg["k"]))
        try:
            weights = {k: d[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
            weights["input_scale"] = torch.as_tensor(d.get("input_scale", 1.0), dtype=torch.float32).reshape(())
            sae.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the SAE of its config {cfg}: {' '.join(str(e).split())}")
        return sae.eval().requires_grad_(False), cfg


def site_rows(output: Tensor, channel_axis: int, counted: Optional[Tensor] = None) -> Tensor:
    """A site output as rows ``[M, d_in]``: every position (``counted`` None) or the counted ones
    (``counted`` BoolTensor ``[R, P]`` of :class:`~lightning_modules.encoders.base.Positions`)."""
    v = site_view(output, channel_axis)
    return v.reshape(-1, v.shape[-1]) if counted is None else v[counted.to(v.device)]
