"""Where the statistics pass spends its time inside one site call: each kernel of the counting and of the
top clips' peak search, timed on the same activations, interleaved call by call (rotating order), median
and quartiles printed in ms and as a share of the counting.

The default shape is one M2D ViT-Base MLP site call of a batch of 8 clips of 10 s (first chunk): 8 rows ×
191 positions (CLS + 5 bands × 38 patches) × 3072 neurons, GELU-like activations, the CLS position not
placed (no frame), so the peak search needs its masked copy.

    python benchmarks/site_call_costs.py [--rows 8 --positions 191 --neurons 3072 --calls 40 --threads 2]

Printed per kernel: ``counting`` (:func:`analysis.activation_stats.positive_counts`), ``sums``
(:func:`~analysis.activation_stats.counted_sums`), ``peak search`` (:func:`analysis.top_clips.row_peaks`:
the masked copy and one channels-last max pool), ``  masked copy`` (that copy alone), ``fold peaks``
(:func:`analysis.top_clips.accumulate_peaks`), ``max with indices`` (a plain ``max`` along the positions
of the masked copy: what the pool replaces), and the whole call with and without top clips
(:func:`analysis.activation_stats.accumulate_call`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from analysis import activation_stats as S
from analysis import top_clips as T


def _quantiles(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=4)
    return f"median {statistics.median(ms):7.3f} ms (quartiles {q[0]:.3f}-{q[2]:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--positions", type=int, default=191)
    ap.add_argument("--neurons", type=int, default=3072)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    R, P, N = a.rows, a.positions, a.neurons
    g = torch.Generator().manual_seed(0)
    act = torch.nn.functional.gelu(torch.randn(R, P, N, generator=g))
    counted = torch.ones(R, P, dtype=torch.bool)
    frames = (torch.arange(P) - 1).expand(R, P).clone()  # position 0 (CLS) has no frame
    placed = counted & (frames >= 0)
    band = torch.where(torch.arange(P) > 0, (torch.arange(P) - 1) % 5, -1)
    clip = torch.arange(R)
    ws = T.Workspace()
    value, position = T.row_peaks(act, placed, ws)
    bias = torch.where(placed, 0.0, float("-inf"))
    masked = act + bias[:, :, None]
    peaks_buf = S.new_batch_buffer(R, N, peaks=True)
    count_buf = S.new_batch_buffer(R, N, sums=False)

    kernels: dict[str, Callable[[], object]] = {
        "counting": lambda: S.positive_counts(act, counted),
        "sums": lambda: S.counted_sums(act, counted),
        "peak search": lambda: T.row_peaks(act, placed, ws),
        "  masked copy": lambda: torch.add(act, bias[:, :, None], out=ws.get((R, P, N), act.dtype, act.device)),
        "fold peaks": lambda: T.accumulate_peaks(peaks_buf, value, position, clip, frames, band, 5),
        "max with indices": lambda: masked.max(1),
        "call, counts only": lambda: S.accumulate_call(count_buf, act, counted, clip),
        "call, top clips": lambda: S.accumulate_call(peaks_buf, act, counted, clip, frames, band, 5, ws),
    }
    times: dict[str, list[float]] = {k: [] for k in kernels}
    names = list(kernels)
    for c in range(a.calls + 3):
        for k in names[c % len(names) :] + names[: c % len(names)]:
            t = time.perf_counter()
            kernels[k]()
            if c >= 3:  # warm-up calls dropped
                times[k].append(1000 * (time.perf_counter() - t))
    print(f"site call [R, P, N] = [{R}, {P}, {N}], {a.threads} threads, {a.calls} interleaved calls")
    base = statistics.median(times["counting"])
    for k in names:
        share = statistics.median(times[k]) / base
        print(f"{k:20s} {_quantiles(times[k])}  = {share:5.2f} x counting")
    extra = statistics.median(times["call, top clips"]) / statistics.median(times["call, counts only"])
    print(f"RATIO call with top clips / call with counts only: {extra:.2f}")


if __name__ == "__main__":
    main()
