"""``stability``: bootstrap stability and threshold sweep of one run folder's AAPE sets
(``python -m analysis stability --run <dir>``); the maths is :mod:`analysis.stability`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from jsonargparse.typing import PositiveInt
from torch.utils.tensorboard import SummaryWriter

from analysis.aape import ACTIVATION_BAR_RATIO, FILTER_RATE, MIN_ACTIVITY, Mode, resolve_top_rate
from analysis.runs.atomic import check_writable
from analysis.runs.layout import STATS
from analysis.runs.read import read_run
from analysis.runs.write import stability_paths, write_stability
from analysis.stability import REPLICATES, Scheme, bootstrap_stability, threshold_sweep


def stability_run(
    run_dir: str | Path,
    *,
    scheme: Scheme = "clips",
    replicates: PositiveInt = REPLICATES,
    seed: int = 0,
    mode: Mode = "default",
    top_rate: float | None = None,
    filter_rate: float = FILTER_RATE,
    activation_bar_ratio: float = ACTIVATION_BAR_RATIO,
    top_rate_table: Mapping[str, float] | None = None,
    min_activity: float | None = None,
    sweep: bool = True,
    tensorboard: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``stability.csv`` (and ``threshold_sweep.csv`` if ``sweep``) into the run folder.

    Args:
        run_dir: a statistics run folder (needs ``stats.pt``: ``n_clips`` / ``n_tokens``).
        scheme: effective sample size of the binomial resampling, ``clips`` (conservative) or ``tokens``.
        replicates: bootstrap replicates.
        seed: seed of the resampling.
        mode, top_rate, filter_rate, activation_bar_ratio, top_rate_table, min_activity: the selection, as for
            ``identify`` (``top_rate=None``: the study's value for the run's task).
        sweep: also run the threshold sweep.
        tensorboard: a TensorBoard log folder for the per-class Jaccard scalars and the tables.
        overwrite: replace existing files.

    ``stability.csv`` carries the settings in extra columns ``scheme, seed, mode, top_rate, filter_rate,
    activation_bar_ratio, min_activity``.
    """
    d = Path(run_dir)
    targets = stability_paths(d, sweep)
    for t in targets.values():
        check_writable(t, overwrite)
    run = read_run(d, stats=True)
    if run.stats is None:
        raise FileNotFoundError(f"{d / STATS}: needed for the stability resampling (n_clips, n_tokens)")
    if scheme not in ("clips", "tokens"):
        raise ValueError(f"scheme must be 'clips' or 'tokens', got {scheme!r}")
    if scheme == "clips":
        n_eff = torch.as_tensor(run.stats["n_clips"])
    else:  # per-site position counts when recorded (CNN sites see different numbers of positions)
        n_eff = torch.as_tensor(run.stats.get("n_tokens_site", run.stats["n_tokens"]))
    ref = {
        "top_rate": resolve_top_rate(run.task, top_rate, top_rate_table),
        "filter_rate": filter_rate,
        "activation_bar_ratio": activation_bar_ratio,
        "min_activity": (0.0 if mode == "lape" else MIN_ACTIVITY) if min_activity is None else float(min_activity),
    }
    st = bootstrap_stability(run.over_zero, n_eff, run.classes, replicates=replicates, seed=seed, mode=mode, **ref)
    st = st.assign(scheme=scheme, seed=seed, mode=mode, **ref)
    sw = threshold_sweep(run.over_zero, run.classes, reference=ref, mode=mode) if sweep else None
    written = write_stability(d, st, sw, overwrite)
    if tensorboard is not None:
        tag = run.path.name
        with SummaryWriter(str(tensorboard)) as w:
            for _, r in st.iterrows():
                w.add_scalar(f"stability/{tag}/{r['class']}/mean_jaccard", r["mean_jaccard"])
            w.add_text(f"stability/{tag}", st.to_csv(index=False).replace("\n", "  \n"))
            if sw is not None:
                w.add_text(
                    f"threshold_sweep/{tag}", sw[sw["class"] == "__all__"].to_csv(index=False).replace("\n", "  \n")
                )
    return written
