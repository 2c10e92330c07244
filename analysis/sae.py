"""Sparse autoencoders (SAEs) on a site's activations: the maths, as plain tensor functions.

An SAE of width ``d_sae`` on a site of ``d_in`` neurons maps one position's activation vector
``x [d_in]`` to latents ``z [d_sae]`` and back (names as SAELens: ``W_enc``, ``b_enc``, ``W_dec``,
``b_dec``)::

    pre   = (x - b_dec) @ W_enc + b_enc                  # [R, d_sae]
    z     = topk(pre, k) (ReLU of the k largest, the rest 0)   architecture "topk" (default)
          | relu(pre)                                           architecture "standard" (ReLU + L1)
    x_hat = z @ W_dec + b_dec                            # [R, d_in], rows of W_dec have unit norm

Losses: ``mse`` (sum over d_in, mean over rows), plus ``l1_coefficient * |z|_1 * |W_dec row|`` for
"standard", plus for "topk" an auxiliary-k loss (Gao et al. 2024): the ``aux_k`` largest pre-activations
among the *dead* latents (not fired for ``dead_feature_window`` rows) reconstruct the residual
``x - x_hat``; it gives dead latents a gradient so they revive.

A **feature** (a latent) is a unit like a neuron: counting, selection, ablation and the gallery see the
latents ``z`` at their site (see ``docs/features.md``). The splice that puts an SAE into an encoder adds
the error term, so zeroing nothing is the original forward exactly: ``y + (z' - z) @ W_dec``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

ARCHITECTURES = ("topk", "standard")


def check_architecture(architecture: str, d_in: int, d_sae: int, k: int) -> None:
    """Clear errors for impossible settings.

    >>> check_architecture("topk", 4, 8, 9)
    Traceback (most recent call last):
    ...
    ValueError: SAE: k=9 must be in 1..d_sae=8 for architecture 'topk'
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"SAE: unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    if d_in < 1 or d_sae < 1:
        raise ValueError(f"SAE: d_in={d_in} and d_sae={d_sae} must be >= 1")
    if architecture == "topk" and not 1 <= k <= d_sae:
        raise ValueError(f"SAE: k={k} must be in 1..d_sae={d_sae} for architecture 'topk'")


def init_weights(d_in: int, d_sae: int, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """Initial ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]`` (unit-norm rows),
    ``b_dec [d_in]``; the encoder starts as the decoder's transpose (as SAELens and Gao et al.)."""
    w_dec = torch.randn(d_sae, d_in, generator=generator)
    w_dec = normalize_decoder(w_dec)
    return {"W_enc": w_dec.t().clone(), "b_enc": torch.zeros(d_sae), "W_dec": w_dec, "b_dec": torch.zeros(d_in)}


def normalize_decoder(w_dec: Tensor) -> Tensor:
    """``W_dec [d_sae, d_in]`` with every row scaled to unit L2 norm (zero rows stay zero).

    >>> normalize_decoder(torch.tensor([[3.0, 4.0], [0.0, 0.0]])).mul(10).round().tolist()
    [[6.0, 8.0], [0.0, 0.0]]
    """
    return w_dec / w_dec.norm(dim=1, keepdim=True).clamp(min=1e-12)


def remove_parallel_grad(w_dec: Tensor, grad: Tensor) -> Tensor:
    """The gradient of unit-norm decoder rows without its component along each row (so a step keeps the
    norm to first order; :func:`normalize_decoder` after the step restores it exactly)."""
    return grad - (grad * w_dec).sum(1, keepdim=True) * w_dec


def pre_activations(x: Tensor, w_enc: Tensor, b_enc: Tensor, b_dec: Tensor) -> Tensor:
    """``x [R, d_in]`` -> ``[R, d_sae]``: ``(x - b_dec) @ W_enc + b_enc``."""
    return (x - b_dec) @ w_enc + b_enc


def topk_activation(pre: Tensor, k: int) -> Tensor:
    """ReLU of the ``k`` largest pre-activations of each row, 0 elsewhere (ties: ``torch.topk``'s choice,
    so exactly ``k`` entries per row are kept before the ReLU).

    >>> topk_activation(torch.tensor([[1.0, -2.0, 3.0, 0.5]]), 2).tolist()
    [[1.0, 0.0, 3.0, 0.0]]
    """
    vals, idx = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, vals.relu())


def activate(pre: Tensor, architecture: str, k: int) -> Tensor:
    """Latents from pre-activations: :func:`topk_activation` ("topk") or ReLU ("standard")."""
    return topk_activation(pre, k) if architecture == "topk" else pre.relu()


def decode(z: Tensor, w_dec: Tensor, b_dec: Tensor) -> Tensor:
    """``z [R, d_sae]`` -> ``x_hat [R, d_in]``."""
    return z @ w_dec + b_dec


def reconstruction_mse(x: Tensor, x_hat: Tensor) -> Tensor:
    """Squared error summed over ``d_in``, mean over rows (a scalar)."""
    return (x - x_hat).pow(2).sum(-1).mean()


def l1_penalty(z: Tensor, w_dec: Tensor) -> Tensor:
    """SAELens' L1 sparsity penalty: ``sum_j |z_j| * ||W_dec[j]||``, mean over rows."""
    return (z.abs() * w_dec.norm(dim=1)).sum(-1).mean()


def auxk_loss(pre: Tensor, residual: Tensor, dead: Tensor, aux_k: int, w_dec: Tensor) -> Tensor:
    """Auxiliary-k loss: reconstruct ``residual = x - x_hat`` ``[R, d_in]`` from the ``aux_k`` largest
    pre-activations ``[R, d_sae]`` among the ``dead`` latents (BoolTensor ``[d_sae]``), normalised by the
    residual's own squared norm (Gao et al. 2024). 0 when no latent is dead."""
    n_dead = int(dead.sum())
    if n_dead == 0 or aux_k < 1:
        return pre.new_zeros(())
    masked = pre.masked_fill(~dead[None, :], float("-inf"))
    z_aux = topk_activation(masked, min(aux_k, n_dead)).nan_to_num(0.0)
    err_hat = z_aux @ w_dec
    denom = residual.pow(2).sum(-1).mean().clamp(min=1e-12)
    return (residual - err_hat).pow(2).sum(-1).mean() / denom


class VarianceSums:
    """Running sums for the fraction of variance explained over many batches (exact merging: float64
    sums of ``x``, ``x**2`` per dimension and of the squared error, and the row count).

    ``fve = 1 - SSE / SST`` with ``SST = sum_d (sum x_d^2 - (sum x_d)^2 / n)`` (variance around each
    dimension's mean, summed over dimensions).

    >>> v = VarianceSums(2); v.add(torch.tensor([[0.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 0.0], [2.0, 1.0]]))
    >>> round(v.fve(), 6)   # SST = 2 + 2 = 4, SSE = 1
    0.75
    """

    def __init__(self, d_in: int, device: torch.device | str = "cpu") -> None:
        self.sum = torch.zeros(d_in, dtype=torch.float64, device=device)
        self.sum_sq = torch.zeros(d_in, dtype=torch.float64, device=device)
        self.sse = torch.zeros((), dtype=torch.float64, device=device)
        self.n = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, x: Tensor, x_hat: Tensor) -> None:
        x64 = x.detach().double()
        self.sum += x64.sum(0)
        self.sum_sq += x64.pow(2).sum(0)
        self.sse += (x64 - x_hat.detach().double()).pow(2).sum()
        self.n += x.shape[0]

    def tensors(self) -> list[Tensor]:
        return [self.sum, self.sum_sq, self.sse, self.n]

    def fve(self) -> float:
        n = float(self.n)
        if n == 0:
            return float("nan")
        sst = float((self.sum_sq - self.sum.pow(2) / n).sum())
        return 1.0 - float(self.sse) / sst if sst > 0 else float("nan")


def l0(z: Tensor) -> Tensor:
    """Mean number of non-zero latents per row.

    >>> float(l0(torch.tensor([[1.0, 0.0], [1.0, 2.0]])))
    1.5
    """
    return (z != 0).sum(-1).double().mean()
