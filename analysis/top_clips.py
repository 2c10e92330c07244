"""Each neuron's top-K clips, kept while the statistics pass streams over the data (plain tensor functions).

A *top-clips state* is a dict of four tensors of shape ``[L, N, K]`` (L sites, N = max neurons per site,
K slots), the format of ``top_clips.pt``:

* ``score`` float32: the clip's mean activation of neuron (l, n) over its counted positions, descending
  along K; ``-inf`` in empty slots;
* ``index`` int64: the clip's dataset index; ``-1`` in empty slots; equal scores are ordered by index;
* ``frame`` int64: first front-end frame of the clip's peak position for that neuron: the counted position
  with a place in time (frame >= 0, so never a CLS token) holding the largest activation (-1: none);
* ``band``  int64: frequency band of the peak (-1 when the site has none).

The order (score descending, then index ascending) is a total order on clips, so the top K of a union is
the top K of the union of the parts' top K: batches, DDP ranks and runs merge exactly
(:func:`merge_top`), whatever the partition. Memory is ``[L, N, K]``, independent of the number of clips.

Per site call the hot path needs, for every row and neuron, the peak activation and where it lies
(:func:`row_peaks`, one masked copy and one channels-last max pool instead of a slow ``max`` with indices); the
peaks of a clip's rows and calls are folded into a per-clip *peak key* (:func:`pack_peak`), an int64 that
orders ties by frame, then band.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

TOP_KEYS = ("score", "index", "frame", "band")
_NO_KEY = torch.iinfo(torch.int64).max


class Workspace:
    """A reusable scratch buffer (grown when needed) for the activation-sized temporary of a site call: the
    masked copy of :func:`row_peaks`.

    A fresh allocation of an activation-sized tensor on every site call costs page faults on CPU: several ms per
    call for ViT-Base, more than the search itself, and it churns the heap so that the model's own activations
    are faulted in again (measured: the GELU of a ViT-Base MLP twice as slow). A buffer kept across calls does not."""

    def __init__(self) -> None:
        self._buf: Optional[Tensor] = None

    def get(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialised tensor of ``shape`` viewing the buffer (reallocated for another dtype or device, or
        when it is too small)."""
        numel = math.prod(shape)
        b = self._buf
        if b is None or b.dtype != dtype or b.device != device or b.numel() < numel:
            b = self._buf = torch.empty(numel, dtype=dtype, device=device)
        return b[:numel].view(*shape)


def new_top(n_sites: int, n_neurons: int, k: int, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """An empty top-clips state ``[n_sites, n_neurons, k]`` (every slot empty).

    >>> t = new_top(2, 3, 4)
    >>> t["score"].shape, t["score"][0, 0, 0].item(), t["index"][0, 0, 0].item()
    (torch.Size([2, 3, 4]), -inf, -1)
    """
    shape = (n_sites, n_neurons, k)
    return {
        "score": torch.full(shape, float("-inf"), dtype=torch.float32, device=device),
        "index": torch.full(shape, -1, dtype=torch.int64, device=device),
        "frame": torch.full(shape, -1, dtype=torch.int64, device=device),
        "band": torch.full(shape, -1, dtype=torch.int64, device=device),
    }


def order_key(score: Tensor, index: Tensor) -> Tensor:
    """int64 key whose descending order is (score descending, index ascending): the float32 score's bits
    made monotonic in the high 32 bits, ``2**32 - 1 - index`` in the low 32 (indices in ``[0, 2**32)``).

    >>> k = order_key(torch.tensor([1.0, 3.0, 3.0, -2.0, float("-inf")]), torch.tensor([5, 9, 4, 7, -1]))
    >>> torch.argsort(k, descending=True).tolist()
    [2, 1, 0, 3, 4]
    """
    bits = (score.float() + 0.0).view(torch.int32).long()  # + 0.0: -0.0 and 0.0 tie
    high = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    low = 0xFFFFFFFF - index.long().clamp(0, 0xFFFFFFFF)
    return (high << 32) | low


def select_top(score: Tensor, index: Tensor, extra: Sequence[Tensor], k: int) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The ``k`` best of ``M`` candidates along the last axis: score descending, ties by index ascending.

    Args:
        score: float32 ``[..., M]`` (``-inf`` = no candidate).
        index: int64 ``[..., M]`` dataset index of each candidate.
        extra: tensors ``[..., M]`` carried along (frame, band).
        k: slots kept (``M < k``: padded with empty slots).

    >>> s, i, (f,) = select_top(torch.tensor([[1., 3., 3., 2.]]), torch.tensor([[5, 9, 4, 7]]),
    ...                         [torch.tensor([[10, 11, 12, 13]])], 3)
    >>> s.tolist(), i.tolist(), f.tolist()
    ([[3.0, 3.0, 2.0]], [[4, 9, 7]], [[12, 11, 13]])
    """
    m = score.shape[-1]
    if m < k:
        pad = k - m
        score = torch.cat([score, score.new_full((*score.shape[:-1], pad), float("-inf"))], -1)
        index = torch.cat([index, index.new_full((*index.shape[:-1], pad), -1)], -1)
        extra = [torch.cat([e, e.new_full((*e.shape[:-1], pad), -1)], -1) for e in extra]
    order = torch.topk(order_key(score, index), k, dim=-1, sorted=True).indices
    return score.gather(-1, order), index.gather(-1, order), [e.gather(-1, order) for e in extra]


def merge_top(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
    """The top-clips state of the union of two (same sites/neurons; K = the smaller of the two).

    Exact: each part's top K holds every clip of that part that can be in the union's top K. A clip listed
    in both (the same run merged twice) is kept twice, as it was counted twice.

    >>> a, b = new_top(1, 1, 2), new_top(1, 1, 2)
    >>> a["score"][0, 0] = torch.tensor([5., 1.]); a["index"][0, 0] = torch.tensor([3, 8])
    >>> b["score"][0, 0, 0] = 5.; b["index"][0, 0, 0] = 2
    >>> merge_top(a, b)["index"][0, 0].tolist()
    [2, 3]
    """
    if a["score"].shape[:2] != b["score"].shape[:2]:
        raise ValueError(f"Cannot merge top clips of shapes {tuple(a['score'].shape)} and {tuple(b['score'].shape)}")
    k = min(a["score"].shape[-1], b["score"].shape[-1])
    cat = {key: torch.cat([a[key], b[key]], -1) for key in TOP_KEYS}
    s, i, (f, bd) = select_top(cat["score"], cat["index"], [cat["frame"], cat["band"]], k)
    return {"score": s, "index": i, "frame": f, "band": bd}


def merge_gathered(parts: dict[str, Tensor]) -> dict[str, Tensor]:
    """Merge the states of W processes stacked as ``[W, L, N, K]`` (``strategy.all_gather``) into one."""
    cat = {key: parts[key].movedim(0, -2).flatten(-2) for key in TOP_KEYS}  # [L, N, W*K]
    k = parts["score"].shape[-1]
    s, i, (f, bd) = select_top(cat["score"], cat["index"], [cat["frame"], cat["band"]], k)
    return {"score": s, "index": i, "frame": f, "band": bd}


@torch.no_grad()
def update_top(
    top: dict[str, Tensor],
    score: Tensor,
    index: Tensor,
    candidate: Tensor,
    peak_key: Optional[Tensor] = None,
    n_bands: int = 0,
) -> None:
    """Offer one batch's clips to every site of ``top`` (in place, on the state's device, no host sync).

    Args:
        top: the state ``[L, N, K]`` (:func:`new_top`).
        score: float32 ``[L, B, N]`` clip means of every site's neurons (NaN = not a candidate, e.g. the
            padding of a site with fewer neurons; see :func:`stack_sites`).
        index: int64 ``[B]`` dataset index of each clip.
        candidate: BoolTensor ``[B]``, clips that may enter (counted clips).
        peak_key: int64 ``[L, B, N]`` (:func:`pack_peak`) or None (peaks unknown: frame and band -1).
        n_bands: frequency bands of the positions (decodes ``peak_key``).

    >>> top = new_top(1, 2, 2)
    >>> update_top(top, torch.tensor([[[1., 4.], [3., float("nan")]]]), torch.tensor([10, 11]),
    ...            torch.tensor([True, True]))
    >>> top["index"].tolist(), top["score"].tolist()
    ([[[11, 10], [10, -1]]], [[[3.0, 1.0], [4.0, -inf]]])
    """
    ok = candidate[None, :, None] & ~torch.isnan(score)  # [L, B, N]
    s = torch.where(ok, score.float(), float("-inf")).transpose(1, 2)  # [L, N, B]
    i = torch.where(ok, index[None, :, None].long(), -1).transpose(1, 2)
    if peak_key is None:
        f = bd = torch.full_like(i, -1)
    else:
        f, bd = unpack_peak(peak_key, n_bands)
        f = torch.where(ok, f, -1).transpose(1, 2)
        bd = torch.where(ok, bd, -1).transpose(1, 2)
    k = top["score"].shape[-1]
    out_s, out_i, (out_f, out_b) = select_top(
        torch.cat([top["score"], s], -1),
        torch.cat([top["index"], i], -1),
        [torch.cat([top["frame"], f], -1), torch.cat([top["band"], bd], -1)],
        k,
    )
    top.update(score=out_s, index=out_i, frame=out_f, band=out_b)


def stack_sites(per_site: Sequence[Tensor], n_neurons: int, fill: float | int) -> Tensor:
    """Per-site tensors ``[B, n_l]`` (ragged sites) padded with ``fill`` to ``[L, B, n_neurons]``."""
    return torch.stack([torch.nn.functional.pad(t, (0, n_neurons - t.shape[1]), value=fill) for t in per_site])


# -- peaks of one site call -----------------------------------------------------------------------
@torch.no_grad()
def row_peaks(act: Tensor, counted: Tensor, workspace: Optional[Workspace] = None) -> tuple[Tensor, Tensor]:
    """Peak activation of every row and neuron over the counted positions, and its position.

    Args:
        act: ``[R, P, N]`` activations of one site call.
        counted: BoolTensor ``[R, P]``.
        workspace: scratch buffer for the masked copy (None: allocate one).
    Returns: ``value`` ``[R, N]`` (act's dtype; ``-inf`` for rows without counted positions) and
    ``position`` int64 ``[R, N]`` (the first position holding the peak; 0 for a row without counted
    positions).

    Uncounted positions are masked by adding -inf (one contiguous copy); the peak and its position are
    then one max pool with indices over all positions, with the copy seen as a channels-last image
    ``[R, N, P, 1]``: the neurons are the image's channels and contiguous, so the pool is one vectorised
    pass (a ``max`` with indices along the middle axis is ten times slower). The pool keeps the first
    maximum (it replaces the running maximum only on a strictly greater value); a NaN wins, as in
    ``max`` (its position is then one of the NaNs': such a clip's mean is NaN, never a top clip).

    >>> act = torch.tensor([[[1., 5.], [7., 2.], [9., 5.]]])          # [R=1, P=3, N=2]
    >>> v, p = row_peaks(act, torch.tensor([[True, True, False]]))
    >>> v.tolist(), p.tolist()
    ([[7.0, 5.0]], [[1, 0]])
    """
    R, P, N = act.shape
    ws = workspace or Workspace()
    ninf = torch.tensor(float("-inf"), dtype=act.dtype, device=act.device)
    bias = torch.where(counted.to(act.device), torch.zeros((), dtype=act.dtype, device=act.device), ninf)
    masked = ws.get((R, P, N), act.dtype, act.device)
    torch.add(act, bias[:, :, None], out=masked)
    image = masked.view(R, P, 1, N).permute(0, 3, 1, 2)  # [R, N, P, 1], channels-last
    value, position = torch.nn.functional.max_pool2d(image, (P, 1), return_indices=True)
    return value.reshape(R, N), position.reshape(R, N)


def pack_peak(frame: Tensor, band: Tensor, n_bands: int) -> Tensor:
    """int64 key of a peak location: ``(frame + 1) * (n_bands + 1) + band + 1`` (frame, band >= -1);
    smaller = earlier frame, then lower band (ties between equal peaks go to the smaller key).

    >>> k = pack_peak(torch.tensor([3, -1]), torch.tensor([2, -1]), 5)
    >>> k.tolist(), [t.tolist() for t in unpack_peak(k, 5)]
    ([27, 0], [[3, -1], [2, -1]])
    """
    return (frame.long() + 1) * (n_bands + 1) + band.long() + 1


def unpack_peak(key: Tensor, n_bands: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`pack_peak`: (frame, band); an unset key (no counted position) gives (-1, -1)."""
    unset = key == _NO_KEY
    frame = torch.where(unset, -1, torch.div(key, n_bands + 1, rounding_mode="floor") - 1)
    band = torch.where(unset, -1, key % (n_bands + 1) - 1)
    return frame, band


def new_peaks(n_clips: int, n_neurons: int, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Per-clip peak buffer of one site and batch: ``peak`` float32 ``[B, N]`` (-inf) and ``peak_key``
    int64 ``[B, N]`` (unset)."""
    return {
        "peak": torch.full((n_clips, n_neurons), float("-inf"), device=device),
        "peak_key": torch.full((n_clips, n_neurons), _NO_KEY, dtype=torch.int64, device=device),
    }


@torch.no_grad()
def accumulate_peaks(
    buffer: dict[str, Tensor],
    value: Tensor,
    position: Tensor,
    clip: Tensor,
    frames: Tensor,
    band: Optional[Tensor],
    n_bands: int,
) -> None:
    """Fold one site call's row peaks into the per-clip ``peak``/``peak_key`` of ``buffer`` (in place).

    Args:
        buffer: holds ``peak`` ``[B, N]`` and ``peak_key`` (:func:`new_peaks`).
        value: ``[R, N]`` each row's peak (:func:`row_peaks`; -inf: no counted position).
        position: int64 ``[R, N]`` its position.
        clip: int64 ``[R]`` the clip (index in the batch) of each row.
        frames: int64 ``[R, P]`` first front-end frame of each position (``Positions.frames()``).
        band: int64 ``[P]`` frequency band of each position, or None.
        n_bands: bands of the site (0 = none).
    """
    value = value.float()
    frame = frames.to(value.device).long().gather(1, position)  # [R, N]
    bd = band.to(value.device).long()[position] if band is not None else torch.full_like(frame, -1)
    key = torch.where(torch.isneginf(value), _NO_KEY, pack_peak(frame, bd, n_bands))
    idx = clip.to(value.device)[:, None].expand_as(value)
    old, old_key = buffer["peak"], buffer["peak_key"]
    new = old.scatter_reduce(0, idx, value, "amax", include_self=True)
    keep_old = torch.where(old == new, old_key, _NO_KEY)
    cand = torch.where(value == new.gather(0, idx), key, _NO_KEY)
    buffer["peak_key"] = keep_old.scatter_reduce(0, idx, cand, "amin", include_self=True)
    buffer["peak"] = new
