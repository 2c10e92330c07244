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
* ``act_sum``     float64 ``[L, N]``     sum of activations over all counted positions (mean ablation);
  present when the activation sums are computed (:func:`new_totals` ``act_sum``)
* ``act_sum_class`` float64 ``[L, N, C]`` sum of activations over the counted positions of each class's
  clips (tuning curves: mean activation per class = act_sum_class / n_tokens_site); present when the
  per-class sums are computed (:func:`new_totals` ``class_sums``)
* ``n_positions`` int64   ``[L]``        counted positions (all classes), so mean = act_sum / n_positions
* ``rate_sum``    float64 ``[L, N, C]``  (``level='clip'`` only) sum over clips of the clip's firing rate

A clip carrying several labels counts toward each of them. Neurons beyond ``site_neurons[l]`` (ragged
sites) stay zero in the totals and are NaN in :func:`over_zero`.

Per batch, a hook reduces every site call to per-clip integer counts on the spot (:func:`accumulate_call`
into a :func:`new_batch_buffer`); at batch end :func:`fold_batch` adds the buffer into the totals with the
batch's class membership. Raw activations are never kept: memory is constant in the dataset size.
Everything stays on the activations' device and nothing reads a value back to the host (no ``.item()``,
``.cpu()`` or data-dependent shape), so a GPU never waits for the counting; the totals move to the CPU
once, after the run.

The counting reads each activation tensor once: one comparison against a per-position threshold (0 at
counted positions, +inf elsewhere, so the mask costs nothing extra) whose boolean result is summed as
bytes (a row has < 256 positions per byte sum; longer rows are summed in slices of 255). The activation
sums (``act_sum``, and the clip means of the top clips) are an option of the buffer.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, Optional, Sequence, get_args

import torch
from torch import Tensor

from analysis import top_clips as T

#: Token policy: the positions counted, ``all`` (every position holding input) or ``patches`` (CLS and other
#: special tokens excluded); a config type (checked by jsonargparse) and :data:`TOKEN_POLICIES`.
TokenPolicy = Literal["all", "patches"]
#: Counting level: ``token`` (every position counts) or ``clip`` (each clip's firing rate).
Level = Literal["token", "clip"]
TOKEN_POLICIES: tuple[str, ...] = get_args(TokenPolicy)
LEVELS: tuple[str, ...] = get_args(Level)
COUNT_KEYS = (
    "count",
    "n_tokens_site",
    "n_tokens",
    "n_clips",
    "act_sum",
    "act_sum_class",
    "n_positions",
)  # summed when merging
CLIP_KEYS = ("rate_sum",)
#: Positions one byte sum can count without overflow.
_BYTE_MAX = 255


def check_policy(tokens: str, level: str) -> None:
    """Raise ValueError for an unknown token policy or level."""
    if tokens not in TOKEN_POLICIES:
        raise ValueError(f"Unknown token policy tokens={tokens!r}; expected one of {TOKEN_POLICIES}")
    if level not in LEVELS:
        raise ValueError(f"Unknown level={level!r}; expected one of {LEVELS}")


def labels_to_multihot(label: Tensor, n_classes: int) -> Tensor:
    """Batch labels → BoolTensor ``[B, C]``, on the labels' device without reading them back.

    ``label`` is int64 ``[B]`` (class index, single-label) or a float/bool multi-hot ``[B, C]``. A class
    index outside ``[0, C)`` gives an all-False row: check labels with :func:`check_labels`.

    >>> labels_to_multihot(torch.tensor([2, 0]), 3).int().tolist()
    [[0, 0, 1], [1, 0, 0]]
    """
    if label.dim() == 1:
        return label.long()[:, None] == torch.arange(n_classes, device=label.device)[None, :]
    if label.dim() == 2 and label.shape[1] == n_classes:
        return label > 0.5 if label.is_floating_point() else label.bool()
    raise ValueError(f"Expected labels [B] or multi-hot [B, {n_classes}], got shape {tuple(label.shape)}")


def check_labels(label: Tensor, n_classes: int, index: Optional[Tensor] = None) -> None:
    """Raise ValueError naming the first clip (dataset ``index`` when given) whose class index lies outside
    ``[0, n_classes)`` or whose multi-hot row has the wrong width. Reads the labels (call it on CPU copies)."""
    if label.dim() == 2:
        if label.shape[1] != n_classes:
            raise ValueError(f"Expected multi-hot labels [B, {n_classes}], got shape {tuple(label.shape)}")
        return
    bad = ((label < 0) | (label >= n_classes)).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        where = f"clip with dataset index {int(index[i])}" if index is not None else f"row {i}"
        raise ValueError(f"Label index out of range [0, {n_classes}): {int(label[i])} ({where})")


def new_totals(
    site_neurons: Sequence[int],
    n_classes: int,
    level: str = "token",
    act_sum: bool = True,
    device: torch.device | str | None = None,
    class_sums: bool = False,
) -> dict[str, Tensor]:
    """Zeroed totals for sites with ``site_neurons`` neurons each (padded to the max) and C classes, on
    ``device``; without ``act_sum`` (no activation sums computed) the totals have no ``act_sum``; with
    ``class_sums`` they have the per-class sums ``act_sum_class`` (whose buffers need sums too)."""
    L, N, C = len(site_neurons), max(site_neurons), n_classes
    t = {
        "count": torch.zeros(L, N, C, dtype=torch.int64, device=device),
        "n_tokens_site": torch.zeros(L, C, dtype=torch.int64, device=device),
        "n_tokens": torch.zeros(C, dtype=torch.int64, device=device),
        "n_clips": torch.zeros(C, dtype=torch.int64, device=device),
        "n_positions": torch.zeros(L, dtype=torch.int64, device=device),
    }
    if act_sum:
        t["act_sum"] = torch.zeros(L, N, dtype=torch.float64, device=device)
    if class_sums:
        t["act_sum_class"] = torch.zeros(L, N, C, dtype=torch.float64, device=device)
    if level == "clip":
        t["rate_sum"] = torch.zeros(L, N, C, dtype=torch.float64, device=device)
    return t


def new_batch_buffer(
    n_clips: int, n_neurons: int, device: torch.device | str = "cpu", sums: bool = True, peaks: bool = False
) -> dict[str, Tensor]:
    """Per-site, per-batch buffer: per-clip positive counts int32 ``[B, N]``, counted positions int64
    ``[B]``, with ``sums`` activation sums float64 ``[B, N]``, with ``peaks`` each clip's peak and its
    location (:func:`analysis.top_clips.new_peaks`). Several site calls of one forward (chunks) add into it."""
    buf = {
        "pos": torch.zeros(n_clips, n_neurons, dtype=torch.int32, device=device),
        "n": torch.zeros(n_clips, dtype=torch.int64, device=device),
    }
    if sums:
        buf["sum"] = torch.zeros(n_clips, n_neurons, dtype=torch.float64, device=device)
    if peaks:
        buf.update(T.new_peaks(n_clips, n_neurons, device))
    return buf


@torch.no_grad()
def positive_counts(act: Tensor, counted: Tensor) -> Tensor:
    """Per row and neuron, the counted positions with activation > 0: ``[R, N]`` (uint8 when P < 256,
    else int32) from activations ``[R, P, N]`` and BoolTensor ``counted`` ``[R, P]``.

    One read of ``act``: a comparison with a threshold that is 0 at counted positions and +inf elsewhere
    (nothing exceeds +inf, NaN exceeds nothing), summed as bytes.

    >>> act = torch.tensor([[[1., -1.], [2., 3.], [4., 5.]]])       # [R=1, P=3, N=2]
    >>> positive_counts(act, torch.tensor([[True, True, False]])).tolist()
    [[2, 1]]
    """
    P = act.shape[1]
    inf = torch.tensor(float("inf"), dtype=act.dtype, device=act.device)
    thr = torch.where(counted.to(act.device), torch.zeros((), dtype=act.dtype, device=act.device), inf)
    positive = torch.gt(act, thr[:, :, None]).view(torch.uint8)
    if P <= _BYTE_MAX:
        return positive.sum(1, dtype=torch.uint8)
    out = None
    for s in range(0, P, _BYTE_MAX):
        part = positive[:, s : s + _BYTE_MAX].sum(1, dtype=torch.uint8).to(torch.int32)
        out = part if out is None else out.add_(part)
    return out


@torch.no_grad()
def counted_sums(act: Tensor, counted: Tensor) -> Tensor:
    """Per row and neuron, the sum of activations over the counted positions: float32 ``[R, N]``.

    Float32 activations: a batched matmul with the 0/1 mask (BLAS, no masked copy). Reduced precision
    (bf16/fp16 autocast): a float32-accumulating sum of the masked activations."""
    counted = counted.to(act.device)
    if act.dtype in (torch.float32, torch.float64):
        return torch.bmm(counted.to(act.dtype)[:, None, :], act)[:, 0].float()
    return (act * counted[:, :, None].to(act.dtype)).sum(1, dtype=torch.float32)


def row_statistics(
    act: Tensor, counted: Tensor, placed: Optional[Tensor], sums: bool, workspace: Optional[T.Workspace] = None
) -> dict[str, Tensor]:
    """Per-row statistics of one site call (eager kernels): ``pos`` positive counts ``[R, N]``
    (:func:`positive_counts`), with ``sums`` ``sum`` float32 ``[R, N]`` (:func:`counted_sums`), with
    ``placed`` (BoolTensor ``[R, P]``: the positions a peak may lie at) ``peak`` ``[R, N]`` and its position
    ``at`` int64 ``[R, N]`` (:func:`analysis.top_clips.row_peaks`)."""
    out = {"pos": positive_counts(act, counted)}
    if sums:
        out["sum"] = counted_sums(act, counted)
    if placed is not None:
        out["peak"], out["at"] = T.row_peaks(act, placed, workspace)
    return out


def fused_row_statistics(act: Tensor, counted: Tensor, placed: Optional[Tensor], sums: bool) -> dict[str, Tensor]:
    """The same as :func:`row_statistics` written as plain reductions, for ``torch.compile`` to fuse into
    one read of ``act`` (counts are the same integers; sums may differ in the last bits)."""
    c = counted[:, :, None]
    out = {"pos": ((act > 0) & c).sum(1, dtype=torch.int32)}
    if sums:
        out["sum"] = torch.where(c, act, 0).sum(1, dtype=torch.float32)
    if placed is not None:
        out["peak"], out["at"] = torch.where(placed[:, :, None], act, float("-inf")).max(1)
    return out


_COMPILED: dict[bool, Any] = {}


def compiled_row_statistics(sums: bool) -> Any:
    """``torch.compile`` (dynamic shapes) of :func:`fused_row_statistics` (with or without sums), built once."""
    if sums not in _COMPILED:
        _COMPILED[sums] = torch.compile(functools.partial(fused_row_statistics, sums=sums), dynamic=True)
    return _COMPILED[sums]


@torch.no_grad()
def accumulate_call(
    buffer: dict[str, Tensor],
    act: Tensor,
    counted: Tensor,
    clip: Tensor,
    frames: Optional[Tensor] = None,
    band: Optional[Tensor] = None,
    n_bands: int = 0,
    workspace: Optional[T.Workspace] = None,
    compiled: bool = False,
) -> None:
    """Add one site call to ``buffer`` (in place, on the activations' device, no host sync).

    Args:
        buffer: from :func:`new_batch_buffer` (``B`` clips, ``N`` = this site's neurons).
        act: activations viewed as ``[R, P, N]`` (rows, positions, neurons).
        counted: BoolTensor ``[R, P]``, the positions counted (input, not padding; under the token policy).
        clip: LongTensor ``[R]``, the clip (index in the batch) of each row.
        frames: LongTensor ``[R, P]`` first front-end frame of each position (``Positions.frames()``);
            needed when the buffer tracks peaks, which are searched among the counted positions with a
            place in time (frame >= 0: never a CLS token).
        band: LongTensor ``[P]`` frequency band of each position (``Positions.band``) or None.
        n_bands: frequency bands of the site (``encoder.n_bands``).
        workspace: scratch buffer reused across calls by the peak search (None: allocate).
        compiled: use :func:`compiled_row_statistics` (one fused kernel) instead of the eager kernels.
    """
    R, P, _ = act.shape
    if tuple(counted.shape) != (R, P):
        raise ValueError(f"Positions {tuple(counted.shape)} do not match site output [R, P] = {(R, P)}")
    counted = counted.to(act.device)
    clip = clip.to(act.device)
    sums, placed = "sum" in buffer, None
    if "peak" in buffer:
        if frames is None:
            raise ValueError("accumulate_call: a buffer with peaks needs the positions' frames")
        frames = frames.to(act.device)
        placed = counted & (frames >= 0)
    if compiled:
        row = compiled_row_statistics(sums)(act, counted, placed)
    else:
        row = row_statistics(act, counted, placed, sums, workspace)
    buffer["pos"].index_add_(0, clip, row["pos"].to(torch.int32))
    buffer["n"].index_add_(0, clip, counted.sum(1))
    if sums:
        buffer["sum"].index_add_(0, clip, row["sum"].double())
    if placed is not None:
        T.accumulate_peaks(buffer, row["peak"], row["at"], clip, frames, band, n_bands)


@torch.no_grad()
def fold_batch(
    totals: dict[str, Tensor],
    buffers: Sequence[dict[str, Tensor]],
    classes: Tensor,
    counted_clips: Optional[Tensor] = None,
) -> None:
    """Add one batch's per-site buffers into ``totals`` (in place, on the totals' device, no host sync).

    Args:
        totals: from :func:`new_totals`.
        buffers: one :func:`new_batch_buffer` per site, in site order.
        classes: BoolTensor ``[B, C]`` class membership of the batch's clips.
        counted_clips: BoolTensor ``[B]``, clips that are counted (e.g. of the selected splits);
            None = all.
    """
    dev = totals["count"].device
    w = classes.to(device=dev, dtype=torch.float64)
    if counted_clips is not None:
        w = w * counted_clips.to(device=dev, dtype=torch.float64)[:, None]
    clip_w = (w.sum(1) > 0).to(torch.float64)  # clips counted at all (have a counted class)
    totals["n_clips"] += w.sum(0).round().long()
    for l, buf in enumerate(buffers):
        pos = buf["pos"].to(device=dev, dtype=torch.float64)  # [B, n]
        n = buf["n"].to(dev)
        nl = pos.shape[1]
        # Float64 matmul is exact for integers < 2**53 (a batch holds far fewer positions).
        totals["count"][l, :nl] += (pos.T @ w).round().long()
        per_class = (n.to(torch.float64) @ w).round().long()
        totals["n_tokens_site"][l] += per_class
        if l == 0:
            totals["n_tokens"] += per_class
        if "act_sum" in totals:
            totals["act_sum"][l, :nl] += clip_w @ buf["sum"].to(dev)
        if "act_sum_class" in totals:
            totals["act_sum_class"][l, :nl] += buf["sum"].to(dev).T @ w
        totals["n_positions"][l] += (n * clip_w.long()).sum()
        if "rate_sum" in totals:
            has = (n > 0)[:, None]
            rate = torch.where(has, pos / n.clamp_min(1).to(torch.float64)[:, None], 0.0)
            totals["rate_sum"][l, :nl] += rate.T @ (w * has.to(torch.float64))


def clip_means(buffer: dict[str, Tensor]) -> Tensor:
    """Each clip's mean activation per neuron over its counted positions: float32 ``[B, N]`` (NaN for
    clips without counted positions); the top-clips score."""
    n = buffer["n"].to(torch.float64)[:, None]
    return torch.where(n > 0, buffer["sum"] / n.clamp_min(1), float("nan")).float()


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


def merge_top_clips(a: dict, b: dict) -> dict:
    """Merge two ``top_clips.pt`` dicts of the same sites (the statistics merge's sibling): the top K of
    the union of their clips (K = the smaller of the two; see :func:`analysis.top_clips.merge_top`)."""
    for key in ("sites", "site_neurons", "frame_seconds", "frames_per_position", "n_bands"):
        if key in a and key in b and a[key] != b[key]:
            raise ValueError(f"Cannot merge top clips with different {key!r}: {a[key]!r} vs {b[key]!r}")
    out = dict(a)
    out.update(T.merge_top(a, b))
    out["k"] = int(out["score"].shape[-1])
    return out
