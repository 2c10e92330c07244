"""Neuron ablation: functional core (plain tensor functions, no Trainer), one module per concept:

* :mod:`~analysis.ablation.condition` — :class:`Condition` and its kinds;
* :mod:`~analysis.ablation.spec` — :class:`ConditionSpec`, the options of a run's condition list, and
  :class:`NeuronList`;
* :mod:`~analysis.ablation.masks` — neuron sets as masks ``[L, N]``;
* :mod:`~analysis.ablation.building` — the condition list of a run and its controls;
* :mod:`~analysis.ablation.site_maps` — per-site affine maps (gain / mean ablation);
* :mod:`~analysis.ablation.scoring` — the counts of a test pass and their DDP merge;
* :mod:`~analysis.ablation.tables` — the rows of ``ablation.csv`` and ``ablation_confusion.csv``;
* :mod:`~analysis.ablation.summary` — matched-draw statistics, the rows of ``ablation_groups.csv``.

Vocabulary
----------
* A *neuron set* is a BoolTensor mask ``[L, N]`` over (site, neuron); ``N = max(site_neurons)`` and
  entries of neurons that do not exist at a ragged site are always False.
* A :class:`Condition` is one way of running the encoder: a name, a kind (``baseline``, ``class``,
  ``explicit``, ``shared``, ``random``, ``index_plus_one``, ``topk``, ``lowent``), the class(es) it
  targets, its ``k`` (top-k and lowest-entropy only), its random ``draw`` (random only), the ``group`` it
  is summarised in, and its mask. ``lowent:<c>:<k>`` are the ``k`` lowest-entropy neurons that prefer class
  ``c`` (:func:`analysis.aape.lowest_entropy_by_class`), whatever the selection's quantile bars select.
* :func:`site_scales` turns conditions into per-site affine maps ``x * scale + shift`` on the channel
  axis: chosen channels get ``scale = gain, shift = 0`` (gain mode, 0 = zero ablation as the study) or
  ``scale = 0, shift = mean`` (mean mode); all other channels get exactly ``scale = 1, shift = 0``, so
  they are bit-for-bit unchanged.
* Scoring accumulates per condition × class ``correct`` and ``n`` counts and per condition the confusion
  counts ``[K, C, C]`` (all int64, on the device, so partial counts merge exactly by summation); under
  DDP each clip is scored by one process only (:func:`owned_positions`) and the processes' counts are
  summed in one reduce (:func:`pack_counts`); :func:`results_table` turns them into the rows of
  ``ablation.csv``, :func:`summarise` into ``ablation_groups.csv`` and :func:`confusion_table` into
  ``ablation_confusion.csv``.
* The options that define a run's condition list (which sets, k-grids, draws, seed) are one
  :class:`ConditionSpec`, shared by :class:`callbacks.AblationCallback`,
  :func:`analysis.runs.conditions.conditions_from_run` and :func:`build_conditions`.
"""

from __future__ import annotations

from analysis.ablation.building import (
    build_conditions,
    control_conditions,
    describe_conditions,
    explicit_conditions,
    per_class_conditions,
    selector_conditions,
    shared_conditions,
    topk_conditions,
)
from analysis.ablation.condition import KINDS, RANKED_KINDS, Condition
from analysis.ablation.masks import (
    existing_mask,
    index_plus_one,
    mask_from_layers,
    mask_from_pairs,
    mask_to_pairs,
    topk_mask,
)
from analysis.ablation.scoring import (
    count_confusion,
    count_correct,
    count_flips,
    owned_positions,
    pack_counts,
    unpack_counts,
)
from analysis.ablation.site_maps import apply_channel_affine, dataset_means, site_scales
from analysis.ablation.spec import AUTO_DRAWS, ConditionSpec, NeuronList
from analysis.ablation.summary import SUMMARY_COLUMNS, matched_draws, set_change_interval, summarise
from analysis.ablation.tables import (
    ABLATION_COLUMNS,
    ALL_CLASSES,
    CONFUSION_COLUMNS,
    confusion_matrix,
    confusion_table,
    flips_in_order,
    results_table,
)

__all__ = [
    "ABLATION_COLUMNS",
    "ALL_CLASSES",
    "AUTO_DRAWS",
    "CONFUSION_COLUMNS",
    "KINDS",
    "RANKED_KINDS",
    "SUMMARY_COLUMNS",
    "Condition",
    "ConditionSpec",
    "NeuronList",
    "apply_channel_affine",
    "build_conditions",
    "confusion_matrix",
    "confusion_table",
    "control_conditions",
    "count_confusion",
    "count_correct",
    "count_flips",
    "dataset_means",
    "describe_conditions",
    "existing_mask",
    "explicit_conditions",
    "flips_in_order",
    "index_plus_one",
    "mask_from_layers",
    "mask_from_pairs",
    "mask_to_pairs",
    "matched_draws",
    "owned_positions",
    "pack_counts",
    "per_class_conditions",
    "results_table",
    "selector_conditions",
    "set_change_interval",
    "shared_conditions",
    "site_scales",
    "summarise",
    "topk_conditions",
    "topk_mask",
    "unpack_counts",
]
