"""Exact per-class activation statistics of neuron sites, as plain tensor functions.

The statistics of one predict run are a dict of tensors (``new_totals``) that only grows by addition,
so runs, ranks and batches merge exactly (integer fields bit for bit). Shapes (L sites, N = max neurons
per site, C classes, B clips in a batch, R rows / P positions of one site call):

* ``count``       int64   ``[L, N, C]``  counted positions with activation > 0, per class
* ``n_tokens_site`` int64 ``[L, C]``   counted positions per class and site (the conv sites of a CNN
  such as CREPE see different numbers of positions; for a ViT every row is equal)
* ``n_tokens``    int64   ``[C]``        = ``n_tokens_site[0]``. ``count / n_tokens`` is
  P(act > 0 | class) only when every site sees the same positions (ViT); in general use
  :func:`over_zero` (``count / n_tokens_site[:, None, :]``).
* ``n_clips``     int64   ``[C]``        counted clips per class
* ``act_sum``     float64 ``[L, N]``     sum of activations over all counted positions (mean ablation)
* ``n_positions`` int64   ``[L]``        counted positions (all classes), so mean = act_sum / n_positions
* ``rate_sum``    float64 ``[L, N, C]``  (``level='clip'`` only) sum over clips of the clip's firing rate

A clip carrying several labels counts toward each of them. Neurons beyond ``site_neurons[l]`` (ragged
sites) stay zero in the totals and are NaN in :func:`over_zero`.

Per batch, a hook reduces every site call to per-clip integer counts on the spot (:func:`accumulate_call`
into a :func:`new_batch_buffer`); at batch end :func:`fold_batch` adds the buffer into the totals with the
batch's class membership. Raw activations are never kept: memory is constant in the dataset size.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

TOKEN_POLICIES = ("all", "patches")
LEVELS = ("token", "clip")
COUNT_KEYS = ("count", "n_tokens_site", "n_tokens", "n_clips", "act_sum", "n_positions")  # summed when merging
CLIP_KEYS = ("rate_sum",)


def check_policy(tokens: str, level: str) -> None:
    """Raise ValueError for an unknown token policy or level."""
    if tokens not in TOKEN_POLICIES:
        raise ValueError(f"Unknown token policy tokens={tokens!r}; expected one of {TOKEN_POLICIES}")
    if level not in LEVELS:
        raise ValueError(f"Unknown level={level!r}; expected one of {LEVELS}")


def labels_to_multihot(label: Tensor, n_classes: int) -> Tensor:
    """Batch labels → BoolTensor ``[B, C]``.

    ``label`` is int64 ``[B]`` (class index, single-label) or a float/bool multi-hot ``[B, C]``."""
    if label.dim() == 1:
        if label.numel() and (int(label.min()) < 0 or int(label.max()) >= n_classes):
            raise ValueError(f"Label index out of range [0, {n_classes}): {label.tolist()}")
        return torch.nn.functional.one_hot(label.long(), n_classes).bool()
    if label.dim() == 2 and label.shape[1] == n_classes:
        return label > 0.5 if label.is_floating_point() else label.bool()
    raise ValueError(f"Expected labels [B] or multi-hot [B, {n_classes}], got shape {tuple(label.shape)}")


def new_totals(site_neurons: Sequence[int], n_classes: int, level: str = "token") -> dict[str, Tensor]:
    """Zeroed totals for sites with ``site_neurons`` neurons each (padded to the max) and C classes."""
    L, N, C = len(site_neurons), max(site_neurons), n_classes
    t = {
        "count": torch.zeros(L, N, C, dtype=torch.int64),
        "n_tokens_site": torch.zeros(L, C, dtype=torch.int64),
        "n_tokens": torch.zeros(C, dtype=torch.int64),
        "n_clips": torch.zeros(C, dtype=torch.int64),
        "act_sum": torch.zeros(L, N, dtype=torch.float64),
        "n_positions": torch.zeros(L, dtype=torch.int64),
    }
    if level == "clip":
        t["rate_sum"] = torch.zeros(L, N, C, dtype=torch.float64)
    return t


def new_batch_buffer(n_clips: int, n_neurons: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Per-site, per-batch buffer: per-clip positive counts int32 ``[B, N]``, counted positions int64
    ``[B]`` and activation sums float64 ``[B, N]``. Several site calls of one forward (chunks) add into it."""
    return {
        "pos": torch.zeros(n_clips, n_neurons, dtype=torch.int32, device=device),
        "n": torch.zeros(n_clips, dtype=torch.int64, device=device),
        "sum": torch.zeros(n_clips, n_neurons, dtype=torch.float64, device=device),
    }


@torch.no_grad()
def accumulate_call(buffer: dict[str, Tensor], act: Tensor, counted: Tensor, clip: Tensor) -> None:
    """Add one site call to ``buffer`` (in place).

    Args:
        buffer: from :func:`new_batch_buffer` (``B`` clips, ``N`` = this site's neurons).
        act: activations viewed as ``[R, P, N]`` (rows, positions, neurons).
        counted: BoolTensor ``[R, P]``, the positions counted (input, not padding; under the token policy).
        clip: LongTensor ``[R]``, the clip (index in the batch) of each row.
    """
    if counted.device != act.device:
        counted = counted.to(act.device)
    R, P, _ = act.shape
    if tuple(counted.shape) != (R, P):
        raise ValueError(f"Positions {tuple(counted.shape)} do not match site output [R, P] = {(R, P)}")
    positive = act > 0
    all_counted = bool(counted.all())
    if not all_counted:
        positive &= counted[:, :, None]
    # Activation sums: a batched matmul with the 0/1 mask of counted positions (BLAS, and no masked
    # copy); for reduced-precision activations (bf16/fp16 autocast) an fp32-accumulating sum instead.
    if act.dtype == torch.float32:
        w = counted.to(act.dtype)[:, None, :]
        row_sum = torch.bmm(w, act)[:, 0]
    elif all_counted:
        row_sum = act.sum(1, dtype=torch.float32)
    else:
        row_sum = (act.float() * counted[:, :, None]).sum(1)
    # Positive counts per row fit int16 when a row has < 32768 positions: bool -> int16 summation is the
    # fastest reduction here (bool -> int64 is several times slower).
    row_pos = positive.sum(1, dtype=torch.int16 if P < 32768 else torch.int32)  # [R, N]
    if clip.device != act.device:
        clip = clip.to(act.device)
    buffer["pos"].index_add_(0, clip, row_pos.to(torch.int32))
    buffer["n"].index_add_(0, clip, counted.sum(1))
    buffer["sum"].index_add_(0, clip, row_sum.double())


@torch.no_grad()
def fold_batch(
    totals: dict[str, Tensor],
    buffers: Sequence[dict[str, Tensor]],
    classes: Tensor,
    counted_clips: Optional[Tensor] = None,
) -> None:
    """Add one batch's per-site buffers into ``totals`` (in place).

    Args:
        totals: from :func:`new_totals`.
        buffers: one :func:`new_batch_buffer` per site, in site order.
        classes: BoolTensor ``[B, C]`` class membership of the batch's clips.
        counted_clips: BoolTensor ``[B]``, clips that are counted (e.g. of the selected splits);
            None = all.
    """
    w = classes.to(torch.float64).cpu()
    if counted_clips is not None:
        w = w * counted_clips.to(torch.float64).cpu()[:, None]
    clip_w = (w.sum(1) > 0).to(torch.float64)  # clips counted at all (have a counted class)
    totals["n_clips"] += w.sum(0).round().long()
    for l, buf in enumerate(buffers):
        pos = buf["pos"].cpu().to(torch.float64)  # [B, n]
        n = buf["n"].cpu()
        nl = pos.shape[1]
        # Float64 matmul is exact for integers < 2**53 (a batch holds far fewer positions).
        totals["count"][l, :nl] += (pos.T @ w).round().long()
        totals["n_tokens_site"][l] += (n.to(torch.float64) @ w).round().long()
        if l == 0:
            totals["n_tokens"] += (n.to(torch.float64) @ w).round().long()
        totals["act_sum"][l, :nl] += clip_w @ buf["sum"].cpu()
        totals["n_positions"][l] += int((n * clip_w.long()).sum())
        if "rate_sum" in totals:
            has = n > 0
            rate = torch.zeros_like(pos)
            rate[has] = pos[has] / n[has, None].to(torch.float64)
            totals["rate_sum"][l, :nl] += rate.T @ (w * has[:, None].to(torch.float64))


def over_zero(totals: dict[str, Tensor], site_neurons: Sequence[int], level: str = "token") -> Tensor:
    """Conditional activation probabilities P(act > 0 | class), float32 ``[L, N, C]``.

    ``level='token'``: count / n_tokens_site (every counted position of a site weighs the same).
    ``level='clip'``: rate_sum / n_clips (mean over clips of each clip's firing rate).
    Entries of neurons that do not exist (``n >= site_neurons[l]``) are NaN; classes without any
    counted position/clip are NaN too."""
    if level == "token":
        p = totals["count"].to(torch.float64) / totals["n_tokens_site"].to(torch.float64)[:, None, :]
    elif level == "clip":
        if "rate_sum" not in totals:
            raise ValueError("level='clip' needs 'rate_sum' in the statistics (run with level: clip)")
        p = totals["rate_sum"] / totals["n_clips"].to(torch.float64)[None, None, :]
    else:
        raise ValueError(f"Unknown level={level!r}; expected one of {LEVELS}")
    p = p.float()
    for l, n in enumerate(site_neurons):
        p[l, n:] = float("nan")
    return p


def merge_stats(a: dict, b: dict) -> dict:
    """Merge two ``stats.pt`` dicts of the same sites/classes/policy by summing their counts."""
    for key in ("sites", "site_neurons", "classes", "tokens", "level"):
        if key in a and key in b and a[key] != b[key]:
            raise ValueError(f"Cannot merge statistics with different {key!r}: {a[key]!r} vs {b[key]!r}")
    out = dict(a)
    for key in COUNT_KEYS + CLIP_KEYS:
        if key in a or key in b:
            if key not in a or key not in b:
                raise ValueError(f"Cannot merge statistics: {key!r} present in only one of them")
            out[key] = a[key] + b[key]
    if "splits" in a and "splits" in b:
        out["splits"] = sorted(set(a["splits"] or []) | set(b["splits"] or [])) if a["splits"] and b["splits"] else None
    return out
