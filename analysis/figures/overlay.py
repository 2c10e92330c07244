"""The listening gallery's image: a clip's log-mel spectrogram with one neuron's activation laid over it
where the neuron fires, and the activation over time below."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

#: Colour (RGB) of a neuron's activation drawn over a spectrogram.
OVERLAY_RGB = (1.0, 0.35, 0.0)
#: Opacity of the overlay where the activation reaches the colour scale's maximum.
OVERLAY_ALPHA = 0.45
#: Percentiles of a clip's log-mel values mapped to white and black (the quiet floor stays white).
SPEC_PERCENTILES = (40.0, 99.5)


def activation_overlay_figure(
    spec: np.ndarray,
    spec_extent: tuple[float, float],
    grid: np.ndarray,
    grid_extent: tuple[float, float],
    vmax: float,
    window: tuple[float, float],
    size: tuple[float, float] = (4.4, 2.3),
    dpi: int = 80,
) -> Figure:
    """Log-mel ``spec [mels, frames]`` (low frequencies first) with a neuron's activation ``grid [bands,
    columns]`` laid over it: each cell is coloured with opacity ∝ activation / ``vmax`` where the neuron
    fires (activation > 0); ``bands`` rows split the mel axis evenly (one row: the whole height). Below, the
    activation over time (maximum over bands) on the scale 0..``vmax``, with the time axis in seconds.
    ``spec_extent`` / ``grid_extent``: seconds covered by the first and last edges of the frames / columns;
    ``window``: the seconds shown. Lean on purpose (no tick labels but time): a gallery draws hundreds."""
    spec = np.asarray(spec, dtype=float)
    grid = np.asarray(grid, dtype=float)
    fig = plt.figure(figsize=size, dpi=dpi)
    ax = fig.add_axes((0.035, 0.33, 0.93, 0.65))
    ax_t = fig.add_axes((0.035, 0.13, 0.93, 0.19))
    m = spec.shape[0]
    lo, hi = np.percentile(spec, SPEC_PERCENTILES) if spec.size else (0.0, 1.0)
    ax.imshow(
        spec,
        origin="lower",
        aspect="auto",
        cmap="gray_r",
        interpolation="nearest",
        vmin=lo,
        vmax=max(hi, lo + 1e-6),
        extent=(spec_extent[0], spec_extent[1], 0, m),
    )
    scale = max(float(vmax), 1e-12)
    if grid.size:
        level = np.clip(np.nan_to_num(grid, nan=0.0) / scale, 0.0, 1.0)
        rgba = np.zeros(grid.shape + (4,))
        rgba[..., :3] = OVERLAY_RGB
        rgba[..., 3] = OVERLAY_ALPHA * level
        ax.imshow(
            rgba, origin="lower", aspect="auto", interpolation="nearest", extent=(grid_extent[0], grid_extent[1], 0, m)
        )
        finite = np.isfinite(grid).any(axis=0)
        over_time = np.where(finite, np.nanmax(np.where(np.isnan(grid), -np.inf, grid), axis=0), np.nan)
        edges = np.linspace(grid_extent[0], grid_extent[1], grid.shape[1] + 1)
        ax_t.stairs(np.clip(over_time, 0.0, None), edges, color=OVERLAY_RGB, fill=True, alpha=0.6)
    ax.set_xlim(*window)
    ax_t.set_xlim(*window)
    ax.set_ylim(0, m)
    ax_t.set_ylim(0.0, scale * 1.05)
    ax.set_xticks([])
    ax.set_yticks([])
    ax_t.set_yticks([])
    ax_t.xaxis.set_major_locator(MaxNLocator(6))
    ax_t.tick_params(labelsize=6, length=2, pad=1)
    return fig
