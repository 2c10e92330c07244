"""Per-site affine maps ``x * scale + shift`` on the channel axis: how a condition's mask becomes the
change of a site's output (gain or mean ablation); unchosen channels are bit-for-bit unchanged."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from analysis.ablation.condition import Condition


def site_scales(
    conditions: Sequence[Condition],
    site_neurons: Sequence[int],
    *,
    gain: float = 0.0,
    mode: str = "gain",
    means: Optional[Tensor] = None,
) -> tuple[list[Tensor], list[Tensor], list[bool]]:
    """Per site l: ``scale[l]``, ``shift[l]`` float32 ``[K, site_neurons[l]]`` (K conditions) and
    ``active[l]`` (does any condition touch site l).

    Gain mode: chosen channels ``x * gain``; mean mode: chosen channels replaced by ``means[l, n]``
    (float ``[L, N]``, the dataset mean from ``stats.pt``). Unchosen channels: scale 1, shift 0."""
    if mode not in ("gain", "mean"):
        raise ValueError(f"Unknown ablation mode {mode!r}; expected 'gain' or 'mean'")
    if mode == "mean" and means is None:
        raise ValueError("mode='mean' needs the dataset means (act_sum / n_positions from stats.pt)")
    K = len(conditions)
    scales, shifts, active = [], [], []
    for l, n_l in enumerate(site_neurons):
        m = torch.stack([c.mask[l, :n_l] for c in conditions]) if K else torch.zeros(0, n_l, dtype=torch.bool)
        sc = torch.ones(K, n_l)
        sh = torch.zeros(K, n_l)
        if mode == "gain":
            sc[m] = float(gain)
        else:
            sc[m] = 0.0
            sh = torch.where(m, means[l, :n_l].float()[None, :].expand(K, n_l), sh)
        scales.append(sc)
        shifts.append(sh)
        active.append(bool(m.any()))
    return scales, shifts, active


def apply_channel_affine(
    output: Tensor, scale: Tensor, shift: Tensor, channel_axis: int, row_condition: Optional[Tensor] = None
) -> Tensor:
    """``output * scale + shift`` along ``channel_axis``.

    Args:
        output: site output, e.g. ``[R, P, N]`` (ViT, axis -1) or ``[R, N, T]`` (conv, axis 1).
        scale, shift: ``[N]`` (one condition for every row) or ``[K, N]`` with ``row_condition``
            LongTensor ``[R]`` giving each row's condition (batch expanded over conditions).
    """
    ax = channel_axis % output.dim()
    n = output.shape[ax]
    if scale.shape[-1] != n:
        raise ValueError(f"site output has {n} channels on axis {channel_axis}, the neuron mask {scale.shape[-1]}")
    if row_condition is None:
        shape = [1] * output.dim()
        shape[ax] = n
        sc, sh = scale.reshape(shape), shift.reshape(shape)
    else:
        if ax == 0:
            raise ValueError("channel_axis 0 cannot be combined with per-row conditions")
        shape = [1] * output.dim()
        shape[0], shape[ax] = output.shape[0], n
        sc = scale[row_condition].reshape(shape)
        sh = shift[row_condition].reshape(shape)
    sc = sc.to(device=output.device, dtype=output.dtype)
    sh = sh.to(device=output.device, dtype=output.dtype)
    return torch.addcmul(sh, output, sc)


def dataset_means(stats: dict, source: str = "statistics") -> Tensor:
    """Mean activation per neuron ``[L, N]`` float64 = ``act_sum / n_positions``.

    ``n_positions`` is taken from ``stats['n_positions']`` when present, else ``n_tokens.sum()`` (valid
    for single-label tasks, where each counted position belongs to exactly one class)."""
    if "act_sum" not in stats:
        raise ValueError(
            f"{source}: no 'act_sum' (needed for mode='mean'; run the statistics with act_sum: true or top_k > 0)"
        )
    if "n_positions" in stats:
        n_pos = torch.as_tensor(stats["n_positions"], dtype=torch.float64)
    elif "n_tokens" in stats:
        if stats.get("multilabel", False):
            raise ValueError(f"{source}: multi-label stats need 'n_positions' for mean ablation")
        n_pos = torch.as_tensor(stats["n_tokens"], dtype=torch.float64).sum()
    else:
        raise ValueError(f"{source}: neither 'n_positions' nor 'n_tokens' present")
    if float(n_pos.min() if n_pos.dim() else n_pos) <= 0:
        raise ValueError(f"{source}: no counted positions (n_positions = {n_pos.tolist()})")
    act = torch.as_tensor(stats["act_sum"], dtype=torch.float64)
    return act / (n_pos[:, None] if n_pos.dim() == 1 else n_pos)
