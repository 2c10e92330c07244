"""Benchmark: AAPE selection on the size of M2D ViT-Base (12 sites x 3072 neurons) x 50 classes (ESC-50).

Target: ``select_neurons`` < 1 s. Prints the median of a few runs per mode and the ratio to the
target. Run: ``.venv/bin/python benchmarks/aape_select.py``.
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch

from analysis.aape import select_neurons

TARGET_S = 1.0


def main(L: int = 12, N: int = 3072, C: int = 50, repeats: int = 5) -> None:
    g = torch.Generator().manual_seed(0)
    n_tokens = torch.randint(5_000, 50_000, (C,), generator=g)
    count = (torch.rand(L, N, C, generator=g) ** 3 * n_tokens).long()  # skewed, like real firing rates
    p = (count / n_tokens).float()
    print(f"select_neurons on {L}x{N}x{C} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for mode in ("default", "lape"):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                neurons = select_neurons(p, mode=mode, top_rate=0.02)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        n_sel = sum(int(t.numel()) for c in neurons for t in c)
        print(
            f"  mode={mode:<7} median {med:.3f} s (min {min(times):.3f}, max {max(times):.3f}); "
            f"ratio to {TARGET_S:.0f} s target: {med / TARGET_S:.2f}; class assignments {n_sel}"
        )


if __name__ == "__main__":
    main()
