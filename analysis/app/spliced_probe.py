"""How much of the model an SAE's features carry: the probe's test accuracy with the reconstruction spliced in.

For a feature model (the base model with an SAE spliced at a site) and a task, the feature model's frozen probe
(trained on the same embeddings as the base model's: the splice leaves the forward unchanged) is tested twice
on the test split: as is (the original model, bit for bit) and with the splice at ``site`` putting out the
SAE's reconstruction alone, its error term dropped (:meth:`FeatureEncoder.reconstruction_at`). The second
is the accuracy "with the reconstruction spliced into the encoder" of SAE practice; both are logged to
TensorBoard (run ``<task>_<feature model>``, versions ``probe_original`` and ``spliced_<site>``) and written
as the ``probe_accuracy`` columns of ``compare/neurons_vs_features.csv`` (neuron rows: the original;
feature rows: the reconstruction), with a Wilson interval.
"""

from __future__ import annotations

from typing import Any

from analysis.runs.layout import site_slug
from analysis.runs.read import best_checkpoint
from analysis.significance import wilson_interval
from lightning_modules import AudioClassifier

#: ``pipe`` below is the :class:`analysis.app.pipeline.Pipeline` (not imported: it imports this module).
Pipeline = Any


def _test_score(pipe: Pipeline, task: str, model: str, version: str, module: AudioClassifier, dm: Any) -> float:
    trainer = pipe.trainer(model, task, version, [])
    out = trainer.test(module, datamodule=dm, verbose=False)
    return float(out[0]["test/score"])


def _with_interval(score: float, n: int, multilabel: bool) -> dict[str, float]:
    """The score with its 95 % Wilson interval (accuracy of ``n`` clips; NaN for multi-label mAP)."""
    lo, hi = (float("nan"), float("nan")) if multilabel else wilson_interval(round(score * n), n)
    return {"probe_accuracy": score, "probe_accuracy_lo": lo, "probe_accuracy_hi": hi}


def spliced_probe_accuracy(pipe: Pipeline, feature_model: str, task: str, sites: list[str]) -> dict[str, Any]:
    """``{"original": {...}, site: {...} for each site}``: the probe's test score (accuracy; mAP for a
    multi-label task) with its interval, as is and with the reconstruction spliced in at each site (one site
    at a time); ``{}`` when the feature model has no probe for ``task``."""
    probe_dir = pipe.probe_dir(task, feature_model)
    if not probe_dir.is_dir():
        return {}
    encoder = pipe.encoder(feature_model)
    module = AudioClassifier(encoder, probe_checkpoint=str(best_checkpoint(probe_dir)))
    dm = pipe.datamodule(task, encoder)
    dm.setup("test")
    n = len(dm.datasets["test"])
    ml = module.multilabel
    out = {"original": _with_interval(_test_score(pipe, task, feature_model, "probe_original", module, dm), n, ml)}
    for site in sites:
        with encoder.reconstruction_at(site):
            score = _test_score(pipe, task, feature_model, f"spliced_{site_slug(site)}", module, dm)
        out[site] = _with_interval(score, n, ml)
    return out
