"""Names of a sparse-autoencoder folder and of the neurons-vs-features table (see :mod:`analysis.runs.layout`)."""

from __future__ import annotations

import re

#: An **SAE folder** (``saes/<model>/<site>/`` of a pipeline output tree, :meth:`OutputTree.sae`) holds one
#: trained sparse autoencoder: ``sae.pt`` (weights + config, :mod:`lightning_modules.sparse_autoencoder`)
#: and ``metrics.csv`` (one row, :data:`SAE_METRICS_COLUMNS`, measured on held-out clips).
SAE_FILE = "sae.pt"
SAE_METRICS_CSV = "metrics.csv"
SAE_METRICS_COLUMNS = [
    "site",
    "d_sae",
    "k",
    "fve",
    "l0",
    "dead_fraction",
    "mse",
    "architecture",
    "rows",
    "train_rows",
    "steps",
    "seconds",
]
#: Activation rows cached on disk by an SAE training run (one file per process and batch).
SAE_CACHE_DIR = "activation_cache"
#: The neurons-vs-features table of a comparison folder (``compare/``).
NEURONS_VS_FEATURES_CSV = "neurons_vs_features.csv"
NEURONS_VS_FEATURES_COLUMNS = [
    "task",
    "model",
    "site",
    "unit_kind",
    "units",
    "specific_units",
    "mean_jaccard",
    "mean_on_target_delta",
    "on_target_delta_per_unit",
    "off_target_delta_per_unit",
    "median_normalized_entropy",
    "feature_model",
    "probe_accuracy",
    "probe_accuracy_lo",
    "probe_accuracy_hi",
]


def sae_cache_file(rank: int, batch: int) -> str:
    """A cached batch of activation rows, relative to the cache folder."""
    return f"rank{rank}/batch{batch:06d}.pt"


def site_slug(site: str) -> str:
    """A site's module path as a folder name.

    >>> site_slug("blocks.5.relu")
    'blocks.5.relu'
    >>> site_slug("encoder/blocks 5")
    'encoder_blocks_5'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", site)
